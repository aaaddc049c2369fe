"""Reading other implementations' files: the original Torch7 models."""
