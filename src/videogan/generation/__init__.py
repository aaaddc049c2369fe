"""Making videos from a trained generator: loading one (a run, a checkpoint, a shipped model), sampling,
animating images; the shipped models."""
