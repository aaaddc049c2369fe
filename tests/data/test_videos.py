import numpy as np
import pytest
import torch

from videogan import media
from videogan.data import VideoClips
from videogan.data.decode import VideoDecodeError, read_frames
from videogan.data.videos import frames_to_clips


def _write_video(path, frames=20, h=24, w=40):
    clip = torch.arange(frames, dtype=torch.uint8)[None, :, None, None].expand(3, frames, h, w) * 10
    media.write_mp4(path, clip.contiguous(), fps=10)


def test_frames_to_clips_crops_resizes_and_cuts():
    frames = np.zeros((35, 20, 30, 3), dtype=np.uint8)
    frames[:, :, 5:25] = 200  # the centre square
    clips = frames_to_clips(frames, clip_frames=8, size=10)
    assert clips.shape == (4, 3, 8, 10, 10) and clips.dtype == torch.uint8
    assert torch.all(clips == 200)


def test_video_folder_dataset_skips_broken_files(tmp_path, capsys):
    _write_video(tmp_path / "good.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    data = VideoClips([tmp_path], frames=8, size=16, seed=0)
    assert len(data) == 2  # 20 frames -> two clips of 8
    assert data.skipped and "broken.mp4" in data.skipped[0]
    assert "skipped:" in capsys.readouterr().err
    batch = data.clips(0, 5)
    assert batch.shape == (5, 3, 8, 16, 16) and batch.dtype == torch.uint8
    assert torch.equal(batch, data.clips(0, 5))


def test_broken_video_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoDecodeError, match="bad.avi"):
        read_frames(bad)


def test_no_usable_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no clip of 8 frames"):
        VideoClips([tmp_path], frames=8, size=16)


def test_real_footage(sample_videos_dir):
    frames = read_frames(sample_videos_dir / "vtest.avi", max_frames=40)
    assert frames.shape == (40, 576, 768, 3)
    clips = frames_to_clips(frames, clip_frames=16, size=32)
    assert clips.shape == (2, 3, 16, 32, 32)


def test_real_footage_becomes_training_clips(sample_videos_dir):
    data = VideoClips([sample_videos_dir / "vtest.avi"], frames=16, size=32, seed=0)
    assert len(data) == 795 // 16 and not data.skipped
    batch = data.clips(3, 4)
    assert batch.shape == (4, 3, 16, 32, 32) and batch.dtype == torch.uint8
    assert batch.float().std() > 10  # real image content, not a constant
