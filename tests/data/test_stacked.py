import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videogan.config import DataConfig
from videogan.data.decode import DataError, DataWarning
from videogan.data.stacked import StackedList, load_stacked_clip, read_list

W = 128  # the released data: 128 px wide, 128 px per frame


def stacked_jpeg(path: Path, values: list[int], width: int = W) -> None:
    """Frames stacked vertically; frame k is a flat colour (values[k], 255 - values[k], 128)
    (near-exact in JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.broadcast_to(np.array([v, 255 - v, 128], np.uint8), (width, width, 3)) for v in values]
    Image.fromarray(np.concatenate(frames, 0)).save(path, quality=95)


def make_golf(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "frames-stable-many"
    stacked_jpeg(root / "golf/a/v1.jpg", [10, 60, 110, 160, 210])  # 5 frames: shorter than the 8 wanted
    stacked_jpeg(root / "golf/b/v2.jpg", [30 + 20 * k for k in range(10)])  # 10 frames
    lst = tmp_path / "golf.txt"
    lst.write_text("golf/a/v1.jpg 3\n\n  golf/b/v2.jpg\n")
    return lst, root


def cfg(**kw) -> DataConfig:
    return DataConfig(**{**dict(workers=0, hflip=False, random_offset=False), **kw})


def red(clip: torch.Tensor) -> list[int]:
    return clip[0, :, 5, 5].tolist()


def test_read_list(tmp_path):
    lst, root = make_golf(tmp_path)
    assert read_list(lst, root) == [str(root / "golf/a/v1.jpg"), str(root / "golf/b/v2.jpg")]
    assert read_list(lst)[0] == str(tmp_path / "golf/a/v1.jpg")  # default root: the list's folder
    with pytest.raises(DataError, match="missing.txt"):
        read_list(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="empty.txt: the list names no videos"):
        StackedList(tmp_path / "empty.txt", "", 8, 64)


def test_load_repeats_the_last_frame_and_scales_to_64(tmp_path):
    lst, root = make_golf(tmp_path)
    clip = load_stacked_clip(root / "golf/a/v1.jpg", 8, 64)
    assert clip.shape == (3, 8, 64, 64) and clip.dtype == torch.uint8
    assert np.allclose(red(clip), [10, 60, 110, 160, 210, 210, 210, 210], atol=2)
    assert np.allclose(clip[1, :, 5, 5].tolist(), [245, 195, 145, 95, 45, 45, 45, 45], atol=2)
    long = load_stacked_clip(root / "golf/b/v2.jpg", 4, 64, offset=3)
    assert np.allclose(red(long), [90, 110, 130, 150], atol=2)
    up = load_stacked_clip(root / "golf/a/v1.jpg", 2, 160)
    assert up.shape == (3, 2, 160, 160)


def test_area_downscale_matches_torch7(tmp_path):
    # Torch7's image.scale 128 -> 64 averages each 2x2 block: check on a random (non-flat) frame
    img = np.random.default_rng(0).integers(0, 256, (2 * W, W, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "r.png")
    clip = load_stacked_clip(tmp_path / "r.png", 2, 64)
    expected = torch.from_numpy(img).view(2, 64, 2, 64, 2, 3).float().mean((2, 4)).round().to(torch.uint8)
    assert torch.equal(clip, expected.permute(3, 0, 1, 2))


def test_batches_reproducible_and_resume_exactly(tmp_path):
    lst, root = make_golf(tmp_path)
    src = StackedList(lst, root, 8, 32, seed=3, cfg=cfg(hflip=True, random_offset=True))
    it = src.batches(0, 6)
    b0, b1 = next(it), next(it)
    assert b0.shape == (6, 3, 8, 32, 32) and b0.dtype == torch.uint8
    again = StackedList(lst, root, 8, 32, seed=3, cfg=cfg(hflip=True, random_offset=True)).batches(0, 6)
    assert torch.equal(next(again), b0)
    resumed = StackedList(lst, root, 8, 32, seed=3, cfg=cfg(hflip=True, random_offset=True)).batches(1, 6)
    assert torch.equal(next(resumed), b1)
    with_workers = StackedList(lst, root, 8, 32, seed=3,
                               cfg=cfg(hflip=True, random_offset=True, workers=2)).batches(0, 6)
    assert torch.equal(next(with_workers), b0) and torch.equal(next(with_workers), b1)
    other_rank = next(StackedList(lst, root, 8, 32, seed=3,
                                  cfg=cfg(hflip=True, random_offset=True)).batches(0, 6, 1, 2))
    assert not torch.equal(other_rank, b0)


def test_both_videos_drawn_frames_in_order(tmp_path):
    lst, root = make_golf(tmp_path)
    batch = next(StackedList(lst, root, 8, 16, seed=0, cfg=cfg()).batches(0, 16))
    firsts = {round(v / 10) * 10 for v in batch[:, 0, 0, 3, 3].tolist()}
    assert firsts == {10, 30}  # both videos drawn, always from their first frame (random_offset off)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path):
    lst, root = make_golf(tmp_path)
    (root / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    lst.write_text("golf/a/v1.jpg\nbad.jpg\nmissing.jpg\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        batch = next(StackedList(lst, root, 8, 16, seed=0, cfg=cfg()).batches(0, 12))
    text = "\n".join(str(x.message) for x in w if issubclass(x.category, DataWarning))
    assert "bad.jpg: not a decodable image" in text and "missing.jpg: cannot read" in text
    assert np.allclose(batch[:, 0, :5, 3, 3].float().mean(0).tolist(), [10, 60, 110, 160, 210],
                       atol=2)  # never grey


def test_nothing_readable_raises(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    (tmp_path / "list.txt").write_text("x.jpg\ny.jpg\n")
    src = StackedList(tmp_path / "list.txt", "", 8, 16, cfg=cfg())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="list.txt: none of the 2 listed videos could be read"):
            next(src.batches(0, 2))
