import importlib
import inspect
import pkgutil

import pytest

import videogan
from videogan.errors import VideoGANError

# Exceptions that never reach the user: each is caught inside the package and becomes a user error, a warning
# or an HTTP status.
INTERNAL = {
    "videogan.data.shards.TarError",  # read_shard: the shard is skipped with a warning naming it
    "videogan.data.shards.EmptyTarError",
    "videogan.interop.t7._Truncated",  # read_t7: a T7Error naming the file
    "videogan.interop.t7._Corrupt",
    "videogan.study.store.DuplicateAnswer",  # study server: 409 to the browser
    "videogan.study.server.BadRequest",  # study server: its HTTP status
}


def package_exceptions() -> dict[str, type]:
    """Every exception class defined in the package (warnings aside), by its qualified name."""
    found = {}
    for info in pkgutil.walk_packages(videogan.__path__, "videogan."):
        if info.name.endswith("__main__"):  # running it is running the CLI
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, Exception) and not issubclass(cls, Warning):
                found[f"{info.name}.{name}"] = cls
    return found


def test_every_error_a_user_can_see_is_a_videogan_error():
    found = package_exceptions()
    assert INTERNAL <= set(found), "an internal exception was renamed or removed: update INTERNAL"
    user_facing = {name: cls for name, cls in found.items() if name not in INTERNAL}
    assert {"videogan.config.ConfigError", "videogan.data.decode.DataError",
            "videogan.training.checkpoint.CheckpointError", "videogan.interop.t7.T7Error"} <= set(user_facing)
    assert [name for name, cls in user_facing.items() if not issubclass(cls, VideoGANError)] == []


@pytest.mark.parametrize("name,builtin", [
    ("videogan.config.ConfigError", ValueError),
    ("videogan.models.geometry.ArchitectureError", ValueError),
    ("videogan.data.decode.DataError", ValueError),
    ("videogan.data.decode.VideoDecodeError", ValueError),
    ("videogan.training.checkpoint.CheckpointError", RuntimeError),
    ("videogan.training.checkpoint.CheckpointWriteError", RuntimeError),
    ("videogan.training.loop.TrainingError", RuntimeError),
    ("videogan.metrics.i3d.I3DWeightsError", RuntimeError),
    ("videogan.interop.t7.T7Error", RuntimeError),
])
def test_each_error_keeps_its_builtin_base(name, builtin):
    module, _, cls = name.rpartition(".")  # `except ValueError` (or RuntimeError) still catches it
    assert issubclass(getattr(importlib.import_module(module), cls), builtin)
