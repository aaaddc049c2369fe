import warnings

import numpy as np
import pytest
import torch

from videogan.config import DataConfig
from videogan.data import VideoClips
from videogan.data.decode import (
    DataError,
    DataWarning,
    TimedFrame,
    VideoDecodeError,
    iter_timed_frames,
    read_frames,
    resample,
)


def test_folder_of_videos_streams_batches_and_skips_broken_files(make_video, tmp_path):
    make_video("good.mp4", count=40)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    data = VideoClips([tmp_path], frames=8, size=16, seed=0, cfg=DataConfig(workers=0, shuffle_buffer=4))
    with pytest.warns(DataWarning, match="broken.mp4"):
        batch = next(data.batches(0, 5))
    assert batch.shape == (5, 3, 8, 16, 16) and batch.dtype == torch.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        again = next(VideoClips([tmp_path], frames=8, size=16, seed=0,
                                cfg=DataConfig(workers=0, shuffle_buffer=4)).batches(0, 5))
    assert torch.equal(batch, again)  # reproducible per (seed, start_step)


def test_ranks_get_different_clips(make_video, tmp_path):
    for i in range(2):
        make_video(f"v{i}.mp4", count=24, seed=i)
    data = VideoClips([tmp_path], frames=8, size=16, seed=0,
                      cfg=DataConfig(workers=0, shuffle_buffer=1, random_offset=False))
    rank0 = next(data.batches(0, 3, rank=0, world_size=2))
    rank1 = next(data.batches(0, 3, rank=1, world_size=2))
    assert not any(torch.equal(a, b) for a in rank0 for b in rank1)


def test_shuffle_within_pass_gives_every_clip_of_a_pass_once(make_video, tmp_path):
    make_video("v.mp4", count=40)

    def first(n: int, within: bool) -> set[bytes]:
        cfg = DataConfig(workers=0, shuffle_buffer=64, random_offset=False, shuffle_within_pass=within)
        batch = next(VideoClips([tmp_path], frames=8, size=16, seed=0, cfg=cfg).batches(0, n))
        return {clip.numpy().tobytes() for clip in batch}

    one_pass = first(40, True)  # 40 clips: more than a pass, so the set is every clip the video has
    assert len(one_pass) >= 3 and len(first(len(one_pass), True)) == len(one_pass)
    assert len(first(len(one_pass), False)) < len(one_pass)  # the buffer holds many passes: repeats at once


def test_no_usable_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"junk")
    with pytest.raises(DataError, match="no clip of 8 frames"), pytest.warns(DataWarning):
        next(VideoClips([tmp_path], frames=8, size=16, cfg=DataConfig(workers=0)).batches(0, 2))
    with pytest.raises(DataError, match="no video files found"):
        (tmp_path / "empty").mkdir()
        VideoClips([tmp_path / "empty"], frames=8, size=16)


def test_a_reader_whose_own_videos_are_broken_reads_the_others(make_video, tmp_path):
    # Two videos, two ranks: each rank decodes one video in the first pass, so one of them starts
    # with the broken file; it must go on to the good one in later passes instead of declaring the
    # whole source unusable.
    make_video("good.mp4", count=24)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    cfg = DataConfig(workers=0, shuffle_buffer=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for rank in range(2):
            batch = next(VideoClips([tmp_path], frames=8, size=16, seed=0,
                                    cfg=cfg).batches(0, 4, rank=rank, world_size=2))
            assert batch.shape == (4, 3, 8, 16, 16)
    with pytest.raises(DataError, match="no clip of 8 frames"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        (tmp_path / "good.mp4").write_bytes(b"junk too")  # every video broken: still an error, on every rank
        next(VideoClips([tmp_path], frames=8, size=16, seed=0, cfg=cfg).batches(0, 2, rank=1, world_size=2))


def test_frames_carry_the_stream_rate(make_video):
    video = make_video("ten.mp4", count=12, fps=10)
    frames = list(iter_timed_frames(video))
    assert {f.stream_fps for f in frames} == {10.0}
    # the source's, kept through resampling
    assert {f.stream_fps for f in resample(iter(frames), fps=5)} == {10.0}


def test_broken_video_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoDecodeError, match="bad.avi"):
        read_frames(bad)


def test_rotation_metadata_is_applied(make_video):
    video = make_video("rot.mp4", count=3, rotation=90, height=32, width=48)
    plain = make_video("plain.mp4", count=3, height=32, width=48)
    rotated, upright = next(iter_timed_frames(video)).image, next(iter_timed_frames(plain)).image
    assert rotated.shape == (48, 32, 3)
    # 90 degrees counter-clockwise, as players show it
    np.testing.assert_array_equal(rotated, np.rot90(upright))


def test_resample_to_a_fixed_rate_handles_variable_timing():
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.0]  # irregular, with a gap
    frames = [TimedFrame(np.full((1, 1, 3), i, np.uint8), t) for i, t in enumerate(times)]
    out = list(resample(iter(frames), fps=5))  # ticks 0, 0.2, 0.4, 0.6, 0.8, 1.0
    assert [round(f.time, 6) for f in out] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [int(f.image[0, 0, 0]) for f in out] == [0, 2, 2, 4, 4, 5]  # the frame on screen at each tick
    up = list(resample(iter(frames[:2]), fps=40))  # 10 fps -> 40 fps repeats frames
    assert [int(f.image[0, 0, 0]) for f in up] == [0, 0, 0, 0, 1]


def test_real_footage_becomes_training_clips(sample_videos_dir):
    frames = read_frames(sample_videos_dir / "vtest.avi", max_frames=4)
    assert frames.shape == (4, 576, 768, 3)
    data = VideoClips([sample_videos_dir / "vtest.avi"], frames=16, size=32, seed=0,
                      cfg=DataConfig(workers=0, shuffle_buffer=2))
    batch = next(data.batches(3, 4))
    assert batch.shape == (4, 3, 16, 32, 32) and batch.dtype == torch.uint8 and batch.float().std() > 10
