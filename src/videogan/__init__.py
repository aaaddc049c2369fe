"""videogan: Generating Videos with Scene Dynamics (Vondrick, Pirsiavash, Torralba, NIPS 2016) in PyTorch."""
from .config import Config, preset
from .errors import VideoGANError
from .generation.loading import LoadedGenerator, load_generator
from .generation.sample import sample, save_samples
from .metrics.measures import mask_statistics
from .models import Discriminator, GeneratorOutput, OneStreamGenerator, TwoStreamGenerator, build_generator
from .version import __version__

__all__ = [
    "__version__",
    "Config",
    "Discriminator",
    "GeneratorOutput",
    "LoadedGenerator",
    "OneStreamGenerator",
    "TwoStreamGenerator",
    "VideoGANError",
    "build_generator",
    "load_generator",
    "mask_statistics",
    "preset",
    "sample",
    "save_samples",
]
