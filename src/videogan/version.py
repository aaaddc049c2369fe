"""The package's version, on its own so that any module can record it (prepare's manifest, evaluate's
protocol) without importing the package's root, which imports most of the package."""
__version__ = "0.1.0"  # as pyproject.toml's
