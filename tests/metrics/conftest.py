"""The FVD tests' stand-in for I3D (the real network is tested in test_i3d.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videogan.metrics import i3d


class StandInI3D(nn.Module):
    """(B, 3, T, 224, 224) in [-1, 1] -> (B, 400): pooled colours and motion through a fixed projection."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(24, 400, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        assert x.shape[1:] == (3, x.shape[2], 224, 224) and x.min() >= -1 and x.max() <= 1
        return F.adaptive_avg_pool3d(x, (2, 2, 2)).flatten(1) @ self.projection


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Use the stand-in wherever the real I3D would be loaded, and a private cache."""
    monkeypatch.setattr(i3d, "load_i3d", lambda device="cpu": StandInI3D().to(device).eval())
    monkeypatch.setattr(i3d, "weights_sha256", lambda: "stand-in")
    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path / "cache"))
    return StandInI3D().eval(), "stand-in"
