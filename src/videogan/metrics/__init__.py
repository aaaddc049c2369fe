"""Evaluation metrics: the Kinetics-400 I3D network (for FVD/KVD)."""
from .i3d import I3D, I3DWeightsError, load_i3d

__all__ = ["I3D", "I3DWeightsError", "load_i3d"]
