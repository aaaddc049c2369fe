import dataclasses
import errno
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videogan import media
from videogan.cli import main
from videogan.data import prepare as prepare_module
from videogan.data.decode import DataError
from videogan.data.prepare import (
    STATE_FILE,
    PrepareConfig,
    VideoStats,
    clip_motion,
    list_inputs,
    prepare,
    video_clips,
)
from videogan.data.shards import resolve_shards

FAST = dict(size=16, frames=8, stabilize=False, clips_per_shard=3)


def shard_members(folder: Path) -> dict[str, bytes]:
    """Every file inside every shard, by shard and member name."""
    members = {}
    for shard in sorted(folder.glob("clips-*.tar")):
        with tarfile.open(shard) as tar:
            for info in tar.getmembers():
                members[f"{shard.name}/{info.name}"] = tar.extractfile(info).read()
    return members


def stored_clips(folder: Path) -> list[tuple[dict, np.ndarray]]:
    """(metadata, frames uint8 [T, S, S, 3]) of every clip in the shards, in order."""
    members, clips = shard_members(folder), []
    for name in sorted(n for n in members if n.endswith(".json")):
        meta = json.loads(members[name])
        image_name = next(n for n in members if n.startswith(name[: -len("json")])
                          and not n.endswith(".json"))
        image = np.asarray(Image.open(io.BytesIO(members[image_name])).convert("RGB"))
        clips.append((meta, image.reshape(meta["frames"], meta["size"], meta["size"], 3)))
    return clips


def test_clip_count_follows_frames_and_stride(make_video, tmp_path):
    video = make_video("a.mp4", count=40)
    for stride, expected in [(0, 5), (8, 5), (4, 9), (16, 3), (40, 1)]:
        summary = prepare([video], tmp_path / f"s{stride}", PrepareConfig(**{**FAST, "stride": stride}),
                          progress=False)
        assert summary.clips_written == expected == (40 - 8) // (stride or 8) + 1
        starts = [meta["start_frame"] for meta, _ in stored_clips(tmp_path / f"s{stride}")]
        assert starts == [i * (stride or 8) for i in range(expected)]


def test_clips_never_span_a_cut(make_video, tmp_path):
    video = make_video("cut.mp4", count=40, cut_at=18)
    summary = prepare([video], tmp_path / "out", PrepareConfig(**FAST), progress=False)
    metas = [meta for meta, _ in stored_clips(tmp_path / "out")]
    # Shot 1 holds frames 0-17 (two clips), shot 2 frames 18-39 (two clips).
    assert [(m["shot"], m["start_frame"]) for m in metas] == [(0, 0), (0, 8), (1, 18), (1, 26)]
    assert summary.clips_written == 4
    report = json.loads((tmp_path / "out" / "report.json").read_text())["videos"]
    assert report[0]["shots"] == 2 and report[0]["status"] == "ok"


def test_lossless_shards_hold_exactly_the_cut_clips(make_video, tmp_path):
    video = make_video("a.mp4", count=24)
    cfg = PrepareConfig(**{**FAST, "lossless": True})
    prepare([video], tmp_path / "out", cfg, progress=False)
    expected = list(video_clips(video, cfg, VideoStats()))
    stored = stored_clips(tmp_path / "out")
    assert len(stored) == len(expected) == 3
    for (meta, frames), clip in zip(stored, expected, strict=True):
        np.testing.assert_array_equal(frames, clip.frames)
        assert meta == {**clip.meta, "crc32": meta["crc32"]}  # the crc32 of the stored image: test_shards.py
    assert all(n.endswith((".png", ".json")) for n in shard_members(tmp_path / "out"))


def test_jpeg_is_the_default_and_close(make_video, tmp_path):
    video = make_video("a.mp4", count=16)
    cfg = PrepareConfig(**{**FAST, "size": 64})
    prepare([video], tmp_path / "out", cfg, progress=False)
    (meta, frames), = stored_clips(tmp_path / "out")[:1]
    clip = next(video_clips(video, cfg, VideoStats()))
    # The test scene is pixel-level noise, JPEG's worst case; real footage is ~3 grey
    # levels (benchmarks/RESULTS.md).
    assert np.abs(frames.astype(int) - clip.frames).mean() < 7
    assert any(n.endswith(".jpg") for n in shard_members(tmp_path / "out"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["image"] == "jpg" and manifest["summary"]["clips_written"] == 2
            and manifest["frames"] == 8)
    # not mkstemp's private mode
    assert oct((tmp_path / "out" / "manifest.json").stat().st_mode & 0o777) != oct(0o600)


def test_stabilisation_removes_camera_shake(make_video, tmp_path):
    video = make_video("shaky.mp4", count=32, shake=4.0, height=192, width=192, objects=1)
    cfg = PrepareConfig(size=32, frames=16, clips_per_shard=10, lossless=True)
    shaky = [clip_motion(c.frames) for c in video_clips(video, dataclasses.replace(cfg, stabilize=False),
                                                        VideoStats())]
    stats = VideoStats()
    steady = [clip_motion(c.frames) for c in video_clips(video, cfg, stats)]
    assert stats.dropped_unstable == 0 and len(steady) == len(shaky) == 2
    assert np.mean(steady) < 0.5 * np.mean(shaky), (steady, shaky)


def test_min_motion_drops_still_clips(make_video, tmp_path):
    still = make_video("still.mp4", count=16, objects=0)
    moving = make_video("moving.mp4", count=16, objects=3)
    summary = prepare([still, moving], tmp_path / "out", PrepareConfig(**{**FAST, "min_motion": 0.5}),
                      progress=False)
    assert summary.clips_written == 2 and summary.clips_dropped_static == 2
    report = {Path(e["path"]).name: e
              for e in json.loads((tmp_path / "out" / "report.json").read_text())["videos"]}
    assert report["still.mp4"]["status"] == "skipped" and "min-motion" in report["still.mp4"]["reason"]


def test_resumed_preparation_equals_an_uninterrupted_one(make_video, tmp_path, monkeypatch):
    videos = [make_video(f"v{i}.mp4", count=24 + 8 * i, seed=i) for i in range(3)]  # 3 + 4 + 5 clips
    cfg = PrepareConfig(**FAST)
    whole = prepare(videos, tmp_path / "whole", cfg, progress=False)

    real_write, calls = prepare_module.write_shard, []

    def crash_on_third_shard(path, samples):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(path, samples)

    monkeypatch.setattr(prepare_module, "write_shard", crash_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare(videos, tmp_path / "resumed", cfg, progress=False)
    assert len(list((tmp_path / "resumed").glob("clips-*.tar"))) == 2
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    monkeypatch.setattr(prepare_module, "write_shard", real_write)
    resumed = prepare(videos, tmp_path / "resumed", cfg, progress=False)

    assert resumed.resumed and resumed.clips_written == whole.clips_written == 12
    assert shard_members(tmp_path / "resumed").keys() == shard_members(tmp_path / "whole").keys()
    for (m1, f1), (m2, f2) in zip(stored_clips(tmp_path / "resumed"), stored_clips(tmp_path / "whole"),
                                  strict=True):
        assert m1 == m2
        np.testing.assert_array_equal(f1, f2)
    report = lambda d: [{k: v for k, v in e.items() if k != "seconds"}  # noqa: E731
                        for e in json.loads((tmp_path / d / "report.json").read_text())["videos"]]
    assert report("resumed") == report("whole")
    # Once complete, the same command does nothing; other settings into the same folder are refused.
    again = prepare(videos, tmp_path / "resumed", cfg, progress=False)
    assert again.already_complete and again.clips_written == 12
    with pytest.raises(DataError, match="other inputs or settings"):
        prepare(videos, tmp_path / "resumed", PrepareConfig(**{**FAST, "size": 8}), progress=False)


def same_shard_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("clips-*.tar"))
    return names == sorted(p.name for p in b.glob("clips-*.tar")) and all(
        (a / name).read_bytes() == (b / name).read_bytes() for name in names)


def test_a_resumed_run_removes_what_a_killed_one_was_writing(make_video, tmp_path, monkeypatch):
    videos = [make_video(f"v{i}.mp4", count=24 + 8 * i, seed=i) for i in range(3)]  # 12 clips: 4 shards
    cfg, out = PrepareConfig(**FAST), tmp_path / "resumed"
    prepare(videos, tmp_path / "whole", cfg, progress=False)
    real_write = prepare_module.write_shard

    def interrupted_at_the_third_shard(path, samples):
        if path.name == "clips-p00000-000002.tar":
            raise KeyboardInterrupt
        return real_write(path, samples)

    monkeypatch.setattr(prepare_module, "write_shard", interrupted_at_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare(videos, out, cfg, progress=False)
    # Killed outright (SIGKILL, power cut) mid-shard, it would also leave the temporary files it was writing.
    leftovers = [out / ".clips-p00000-000002.x8k2m1q9.tar", out / "..prepare-state-p00000.a1b2c3d4.json"]
    leftovers[0].write_bytes((out / "clips-p00000-000001.tar").read_bytes()[:3000])
    leftovers[1].write_text('{"shards": 1')
    assert resolve_shards(str(out)) == [str(out / f"clips-p00000-00000{i}.tar") for i in range(2)]
    monkeypatch.setattr(prepare_module, "write_shard", real_write)
    assert prepare(videos, out, cfg, progress=False).resumed
    assert not any(path.exists() for path in leftovers)
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "whole"))
    assert same_shard_bytes(out, tmp_path / "whole")
    manifest = json.loads((out / "manifest.json").read_text())
    assert resolve_shards(str(out)) == [str(out / name) for name in manifest["shards"]]


def no_space_left() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_naming_the_file_and_the_same_command_resumes(make_video, tmp_path,
                                                                              monkeypatch, capsys):
    videos = [make_video(f"v{i}.mp4", count=24 + 8 * i, seed=i) for i in range(3)]  # 12 clips: 4 shards

    def command(out: Path) -> list[str]:
        return ["prepare", *map(str, videos), "--out", str(out), "--size", "16", "--frames", "8",
                "--no-stabilize", "--clips-per-shard", "3", "--workers", "1", "--quiet"]

    assert main(command(tmp_path / "whole")) == 0
    out = tmp_path / "full"
    real_write, shards_begun = prepare_module.write_shard, []

    def disk_fills_in_the_third_shard(path, samples):
        shards_begun.append(path)

        def until_full():
            for number, sample in enumerate(samples):
                if len(shards_begun) == 3 and number == 1:
                    raise no_space_left()
                yield sample
        return real_write(path, until_full())

    monkeypatch.setattr(prepare_module, "write_shard", disk_fills_in_the_third_shard)
    capsys.readouterr()
    assert main(command(out)) == 2
    assert capsys.readouterr().err == (
        f"videogan: error: {out / 'clips-p00000-000002.tar'}: cannot write (No space left on device); "
        "the 2 shards written before are kept: run the same command again to resume once that is fixed\n")
    # Nothing of the third shard is left, not even its temporary file.
    assert sorted(os.listdir(out)) == [STATE_FILE, "clips-p00000-000000.tar", "clips-p00000-000001.tar"]

    monkeypatch.setattr(prepare_module, "write_shard", real_write)
    real_write_json = prepare_module.write_json

    def disk_full_at_the_manifest(path, data, **options):
        if Path(path).name == "manifest.json":
            raise no_space_left()
        real_write_json(path, data, **options)

    monkeypatch.setattr(prepare_module, "write_json", disk_full_at_the_manifest)
    assert main(command(out)) == 2  # space ran out again, at the very end
    error = capsys.readouterr().err
    assert f"{out / 'manifest.json'}: cannot write (No space left on device); the 4 shards" in error

    monkeypatch.setattr(prepare_module, "write_json", real_write_json)
    assert main(command(out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] and summary["clips_written"] == 12 and summary["shards"] == 4
    assert same_shard_bytes(out, tmp_path / "whole")


def test_every_output_is_renamed_into_place_durably(make_video, tmp_path, monkeypatch):
    real_replace, replaced, synced = media.durable_replace, set(), []

    def recorded(src, dst):
        replaced.add(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(media, "durable_replace", recorded)
    monkeypatch.setattr(media, "fsync_path", synced.append)
    prepare([make_video("a.mp4", count=32)], tmp_path / "new" / "out", PrepareConfig(**FAST), progress=False)
    # each partition's shards, state, report and completion marker, then the data set's report and manifest
    assert replaced == {"clips-p00000-000000.tar", "clips-p00000-000001.tar", STATE_FILE,
                        "report-p00000.json", "done-p00000.json", "report.json", "manifest.json"}
    # first the new output folder's own entry (once), then what each durable rename flushes inside it
    assert synced[0] == tmp_path / "new" and synced.count(tmp_path / "new") == 1


# Run as a script: the whole preparation in this process, with a pool of workers each of which, as spawned
# processes run their parent's script too, spends a minute on its video.
BUSY_WORKERS = """
    import os, sys, time
    from pathlib import Path
    from videogan.data import prepare as prepare_module

    def busy_for_a_minute(index, path, cfg, skip=0, on_frame=None):
        (Path(sys.argv[1]) / str(os.getpid())).touch()
        time.sleep(60)

    prepare_module.prepare_video = busy_for_a_minute

    if __name__ == "__main__":
        prepare_module.prepare(sys.argv[2:4], sys.argv[4], workers=2, progress=False)
"""


def process(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process `pid`, from Linux's /proc; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return None
    return fields[0], int(fields[19])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc")
def test_workers_end_with_a_killed_prepare(tmp_path):
    script, started, log = tmp_path / "busy.py", tmp_path / "started", tmp_path / "log.txt"
    script.write_text(textwrap.dedent(BUSY_WORKERS))
    started.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"never decoded")
    with open(log, "wb") as output:
        arguments = [str(started), str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), str(tmp_path / "out")]
        parent = subprocess.Popen([sys.executable, str(script), *arguments], stdout=output, stderr=output)
    workers: dict[int, int] = {}  # pid: start time (a pid alone may be reused once the process has gone)

    def alive(pid: int) -> bool:  # not gone, nor a zombie its new parent has yet to reap, nor another process
        state = process(pid)
        return state is not None and state[0] != "Z" and state[1] == workers[pid]

    try:
        for _ in range(1200):  # both workers busy with a video (starting takes seconds on a loaded machine)
            if len(list(started.iterdir())) == 2 or parent.poll() is not None:
                break
            time.sleep(0.1)
        workers = {int(p.name): process(int(p.name))[1] for p in started.iterdir()}
        assert len(workers) == 2 and parent.poll() is None, log.read_text()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(300):  # within 30 s, against the minute they would otherwise go on for
            if not any(map(alive, workers)):
                break
            time.sleep(0.1)
        assert not any(map(alive, workers))
    finally:
        parent.kill()
        parent.wait()
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)


def test_worker_processes_give_the_same_shards(make_video, tmp_path):
    videos = [make_video(f"v{i}.mp4", count=16 + 8 * i, seed=i) for i in range(3)]
    prepare(videos, tmp_path / "one", PrepareConfig(**FAST), workers=1, progress=False)
    prepare(videos, tmp_path / "two", PrepareConfig(**FAST), workers=2, progress=False)
    assert shard_members(tmp_path / "one") == shard_members(tmp_path / "two")


def test_every_kind_of_bad_input_is_reported_and_the_rest_goes_on(make_video, tmp_path):
    good = make_video("good.mp4", count=16)
    data = good.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.avi").write_bytes(b"\x00\x01not a video at all" * 100)
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])  # its index (moov) is lost
    (tmp_path / "notes.md").write_text("# not a video\n")
    short = make_video("short.mp4", count=5)
    # A stream that fails mid-way: 2000 bytes of noise a third of the way into a longer video.
    broken = bytearray(make_video("midway.mp4", count=60, seed=5).read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    broken[len(broken) // 3 : len(broken) // 3 + 2000] = noise
    (tmp_path / "midway.mp4").write_bytes(bytes(broken))
    inputs = [good, tmp_path / "empty.mp4", tmp_path / "garbage.avi", tmp_path / "truncated.mp4",
              tmp_path / "notes.md", short, tmp_path / "midway.mp4", tmp_path / "missing.mp4"]

    summary = prepare(inputs, tmp_path / "out", PrepareConfig(**FAST), progress=False)
    report = {Path(e["path"]).name: e
              for e in json.loads((tmp_path / "out" / "report.json").read_text())["videos"]}
    assert set(report) == {p.name for p in map(Path, inputs)}
    assert report["good.mp4"]["status"] == "ok" and report["good.mp4"]["clips"] == 2
    assert report["missing.mp4"]["reason"] == "no such file or directory"
    assert (report["short.mp4"]["status"] == "skipped"
            and "no shot as long as one clip (5 frames" in report["short.mp4"]["reason"])
    assert (report["midway.mp4"]["status"] == "partial"
            and "cannot decode after" in report["midway.mp4"]["reason"])
    for name in ("empty.mp4", "garbage.avi", "truncated.mp4", "notes.md"):
        assert report[name]["status"] == "skipped", report[name]
        assert report[name]["reason"].startswith(str(tmp_path / name)) and "\n" not in report[name]["reason"]
    assert summary.clips_written == 2 + report["midway.mp4"]["clips"]
    assert summary.videos_skipped == 6 and summary.videos_ok == 2


def test_nothing_usable_is_an_error_with_a_report(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="no clips came out of 1 inputs"):
        prepare([tmp_path / "empty.mp4"], tmp_path / "out", PrepareConfig(**FAST), progress=False)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["videos"][0]["status"] == "skipped"


def test_inputs_folders_and_lists(make_video, tmp_path):
    a, b = make_video("a.mp4"), make_video("b.gif", codec="gif", count=10)
    (tmp_path / "sub").mkdir()
    c = make_video("sub/c.mkv")
    (tmp_path / "list.txt").write_text("# my videos\na.mp4\n\nsub/c.mkv\nnot-there.mp4\n")
    videos, missing = list_inputs([tmp_path / "list.txt", tmp_path])
    # list order first, then the folder's sorted walk; no duplicates
    assert [Path(v.location) for v in videos] == [a, c, b]
    assert ([Path(m["path"]).name for m in missing] == ["not-there.mp4"]
            and "listed in" in missing[0]["reason"])


def test_rotation_grayscale_gif_and_fps(make_video, tmp_path):
    rotated = make_video("rot.mp4", count=16, rotation=90, height=64, width=96)
    clip = next(video_clips(rotated, PrepareConfig(**FAST), VideoStats()))
    assert clip.frames.shape == (8, 16, 16, 3)
    gray = next(video_clips(make_video("g.mp4", count=16, gray=True), PrepareConfig(**FAST), VideoStats()))
    assert np.array_equal(gray.frames[..., 0], gray.frames[..., 1])  # grey source: equal channels, still RGB
    gif = next(video_clips(make_video("g.gif", count=16, codec="gif"), PrepareConfig(**FAST), VideoStats()))
    assert gif.frames.shape == (8, 16, 16, 3)
    video = make_video("ten.mp4", count=40, fps=10)
    stats = VideoStats()
    clips = list(video_clips(video, PrepareConfig(**{**FAST, "fps": 5.0}), stats))
    assert stats.frames == 20 and len(clips) == 2
    assert clips[1].meta["start_time"] == pytest.approx(1.6) and clips[1].meta["fps"] == 5.0
    # the stream's own rate
    assert next(video_clips(video, PrepareConfig(**FAST), VideoStats())).meta["fps"] == 10.0


def test_cli_prepare_then_train(make_video, tmp_path, capsys):
    video = make_video("a.mp4", count=48)
    assert main(["prepare", str(video), "--out", str(tmp_path / "data"), "--size", "8", "--frames", "4",
                 "--no-stabilize", "--workers", "1", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips_written"] == 12 and summary["videos_ok"] == 1
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--steps", "2",
                 "--quiet", "--set", "model.frames=4", "--set", "model.size=8", "--set", "model.g_width=8",
                 "--set", "model.d_width=4", "--set", "train.batch_size=2", "--set", "data.workers=0",
                 "--set", "train.sample_every=0", "--device", "cpu"])
    assert code == 0 and json.loads(capsys.readouterr().out)["step"] == 2
    assert main(["prepare", str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "no clips came out" in capsys.readouterr().err


def test_real_videos_prepare_and_train(sample_videos_dir, tmp_path):
    """All the shared sample videos (varied codecs, sizes, camera motion, cuts) -> shards -> a few training
    steps."""
    summary = prepare([sample_videos_dir], tmp_path / "data", PrepareConfig(size=32, frames=16, fps=5),
                      workers=2, progress=False)
    report = json.loads((tmp_path / "data" / "report.json").read_text())["videos"]
    assert summary.videos_skipped == 0 and summary.videos_ok == len(report) >= 5
    by_name = {Path(e["path"]).name: e for e in report}
    assert by_name["vtest.avi"]["dropped_unstable"] == 0  # a static camera is always stabilised
    assert by_name["vtest.avi"]["clips"] == 795 // 2 // 16  # 10 fps resampled to 5
    assert summary.clips_dropped_unstable < 0.25 * (summary.clips_written + summary.clips_dropped_unstable)
    residuals = [meta["stabilization_residual"] for meta, _ in stored_clips(tmp_path / "data")]
    assert all(r is not None and 0 <= r < 1 for r in residuals)  # output pixels

    from videogan.config import DataConfig
    from videogan.training.loop import train

    cfg = dataclasses.replace(_tiny_cfg(), data=DataConfig(source=str(tmp_path / "data"), workers=1))
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 3 and np.isfinite(result.last_metrics["d_loss"])


def _tiny_cfg():
    from videogan.config import Config, ModelConfig, TrainConfig

    return Config(model=ModelConfig(frames=16, size=32, g_width=16, d_width=8),
                  train=TrainConfig(batch_size=4, steps=3, log_every=1, sample_every=0, checkpoint_every=0,
                                    num_samples=4, device="cpu"))


def test_cli_bench_data_prints_clips_per_second(make_video, tmp_path, capsys):
    prepare([make_video("a.mp4", count=32)], tmp_path / "data", PrepareConfig(**FAST), progress=False)
    assert main(["bench", "data", str(tmp_path / "data"), "--frames", "8", "--size", "16", "--batch-size",
                 "2", "--batches", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clips_per_second"] > 0 and result["frames"] == 8 and result["shards"] == 2
