"""FVD and KVD while training (`train.eval_every`): the generator being trained against its own training data,
by the protocol of `videogan evaluate` (evaluate.py), so that the numbers compare with the command's."""
from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from . import i3d
from .distances import fvd_from_features, kernel_distance
from .evaluate import Protocol, generator_clips, i3d_features, metric_name, real_features


class TrainingEvaluator:
    """FVD/KVD of the generator being trained against its own training data (`train.eval_every`). I3D and the
    real features are loaded on first use; the real features come from the cache after the first time."""

    def __init__(self, cfg: Config, device: torch.device, batch_size: int = 8):
        self.cfg, self.device, self.batch_size = cfg, device, batch_size
        self.protocol = Protocol(num=cfg.train.eval_num, frames=min(16, cfg.model.frames),
                                 size=cfg.model.size, seed=cfg.train.seed)
        self.metric = metric_name("fvd", self.protocol.num, self.protocol.frames)  # e.g. fvd256_16f
        self._i3d = None
        self._real: np.ndarray | None = None

    def __call__(self, generator: torch.nn.Module) -> dict:
        if self._i3d is None:
            # looked up on the module when first needed, so that tests can stand a small network in for I3D
            self._i3d = (i3d.load_i3d(self.device), i3d.weights_sha256())
            self._real, _ = real_features(self.cfg.data.source, self._i3d[0], self.protocol, self.device,
                                          self.batch_size, self._i3d[1], progress=False,
                                          synthetic=self.cfg.synthetic)
        fake = i3d_features(generator_clips(generator, self.cfg.model.z_dim, self.protocol, self.batch_size),
                            self._i3d[0], self.protocol, self.device, self.batch_size, progress=False)
        return {self.metric: fvd_from_features(self._real, fake),
                self.metric.replace("fvd", "kvd", 1): kernel_distance(self._real, fake)}
