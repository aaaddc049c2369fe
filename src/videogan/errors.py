"""The one base class of the errors a user sees: the command line prints them as one line and exits 2."""
from __future__ import annotations


class VideoGANError(Exception):
    """An error for the user, not a bug: the message is one line naming the file, folder or config key and the
    reason. Each subclass also keeps its builtin base (ValueError, RuntimeError), so `except ValueError` still
    catches it."""


__all__ = ["VideoGANError"]
