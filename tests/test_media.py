import os
import stat

import pytest
import torch

from videogan import media


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths that os.fsync flushed, in order."""
    calls: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name the flushed descriptors")
def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, synced):
    target = tmp_path / "state.json"
    media.write_json(target, {"step": 3})
    assert len(synced) == 2
    flushed_file, flushed_folder = synced
    assert (os.path.dirname(flushed_file) == str(tmp_path)
            and os.path.basename(flushed_file).startswith(".state."))
    assert flushed_folder == str(tmp_path)
    assert target.read_text() == '{\n  "step": 3\n}\n'


def test_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with media.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_uses_the_umask_not_a_private_mode(tmp_path):
    old = os.umask(0o022)
    try:
        media.write_json(tmp_path / "a.json", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_durable_replace_moves_a_folder(tmp_path, synced):
    src = tmp_path / ".tmp"
    src.mkdir()
    (src / "x").write_text("1")
    media.durable_replace(src, tmp_path / "final")
    assert (tmp_path / "final" / "x").read_text() == "1" and not src.exists()
    assert synced[-1] == str(tmp_path)


def test_to_model_range_maps_uint8_to_minus_one_one():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).reshape(1, 1, 1, 1, 3)
    y = media.to_model_range(x, torch.device("cpu"))
    assert y.dtype == torch.float32
    assert y.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_a_new_folder_is_flushed_into_its_parent_once(tmp_path, synced):
    media.make_folder_durably(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and synced == [str(tmp_path / "a")]
    media.make_folder_durably(tmp_path / "a" / "b")  # already there: nothing to flush
    assert synced == [str(tmp_path / "a")]
