"""videogan: Generating Videos with Scene Dynamics (Vondrick, Pirsiavash, Torralba, NIPS 2016) in PyTorch."""
from .config import Config, preset
from .models import Discriminator, GeneratorOutput, OneStreamGenerator, TwoStreamGenerator, build_generator
from .generation.sample import LoadedGenerator, load_generator, mask_statistics, sample, save_samples

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Discriminator",
    "GeneratorOutput",
    "LoadedGenerator",
    "OneStreamGenerator",
    "TwoStreamGenerator",
    "build_generator",
    "load_generator",
    "mask_statistics",
    "preset",
    "sample",
    "save_samples",
]
