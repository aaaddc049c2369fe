"""Weight initialisation of the original code (main.lua, `weights_init`)."""
from __future__ import annotations

from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


def init_weights(module: nn.Module) -> None:
    """Every (transposed) conv weight ~ N(0, 0.01), bias 0; BatchNorm weight ~ N(1, 0.02), bias 0.

    The known PyTorch port skips the BatchNorm part, leaving weight = 1; we follow the original.
    """
    for m in module.modules():
        if isinstance(m, _CONVS):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
