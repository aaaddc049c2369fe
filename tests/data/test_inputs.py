"""What `videogan prepare` reads: manifests (CSV, JSON Lines, Parquet) with spans of seconds, URLs read
through fsspec from an HTTP server the test starts, and bad rows reported while the rest are prepared."""
import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from videogan.cli import main
from videogan.data.decode import DataError
from videogan.data.inputs import VideoSource, list_inputs, read_manifest, timed_frames
from videogan.data.prepare import PrepareConfig, VideoStats, video_clips

FAST = dict(size=16, frames=8, stabilize=False, clips_per_shard=100)


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a free port) while the test runs: (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_span_keeps_the_frames_whose_time_is_in_it(make_video):
    video = make_video("v.mp4", count=40, fps=10)  # 4 s
    whole = list(timed_frames(VideoSource(str(video))))
    span = list(timed_frames(VideoSource(str(video), start=1.0, end=2.5)))
    assert len(whole) == 40
    assert [round(f.time, 3) for f in span] == [round(f.time, 3) for f in whole if 1.0 <= f.time < 2.5]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(span, whole[10:25], strict=True))
    # A span deep in the video seeks to a keyframe first; the frames are the same as decoding from the start.
    late = list(timed_frames(VideoSource(str(video), start=2.0)))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(late, whole[20:], strict=True))
    assert len(late) == 20


def test_a_source_names_its_span_and_sorts_by_location_then_span():
    plain, cut = VideoSource("a.mp4"), VideoSource("a.mp4", 2.0, 4.5)
    assert str(plain) == "a.mp4" and str(cut) == "a.mp4#t=2,4.5"
    assert str(VideoSource("a.mp4", 3)) == "a.mp4#t=3,"
    other = VideoSource("b.mp4")
    assert sorted([other, cut, plain], key=VideoSource.sort_key) == [plain, cut, other]


def test_manifests_in_csv_jsonl_and_parquet_read_the_same(make_video, tmp_path):
    make_video("a.mp4")
    (tmp_path / "sub").mkdir()
    make_video("sub/b.mp4")
    rows = [{"path": "a.mp4", "start": 1.0, "end": 3.0}, {"path": "sub/b.mp4", "start": None, "end": None}]
    (tmp_path / "m.csv").write_text("path,start,end\na.mp4,1,3\nsub/b.mp4,,\n")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the parquet extra) is not installed")
    import pyarrow

    pq.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "m.parquet")
    expected = [VideoSource(str(tmp_path / "a.mp4"), 1.0, 3.0), VideoSource(str(tmp_path / "sub/b.mp4"))]
    for name in ("m.csv", "m.jsonl", "m.parquet"):
        assert read_manifest(str(tmp_path / name)) == (expected, []), name


def test_every_bad_row_is_reported_by_its_number_and_the_rest_are_listed(make_video, tmp_path):
    make_video("a.mp4")
    (tmp_path / "m.jsonl").write_text(
        '{"path": "a.mp4"}\n'
        '{"path": "gone.mp4"}\n'  # row 2: no such file
        '{"url": "a.mp4", "start": "soon"}\n'  # 3: start not a number
        '{"path": "a.mp4", "start": 3, "end": 1}\n'  # 4: empty span
        '{"name": "a.mp4"}\n'  # 5: no path or url
        '{not json\n'  # 6
        '[1, 2]\n'  # 7: not an object
        '{"path": "a.mp4", "start": -1}\n')  # 8: negative
    sources, bad = list_inputs([tmp_path / "m.jsonl"])
    assert sources == [VideoSource(str(tmp_path / "a.mp4"))]
    reasons = [entry["reason"] for entry in bad]
    assert [int(r.split(" row ")[1].split(":")[0]) for r in reasons] == [2, 3, 4, 5, 6, 7, 8]
    expected = ["no such file", "start is not a number", "not after start", "no `path` or `url`", "not JSON",
                "not an object", "non-negative"]
    for words, reason in zip(expected, reasons, strict=True):
        assert words in reason and str(tmp_path / "m.jsonl") in reason
    assert all(entry["status"] == "skipped" and "\n" not in entry["reason"] for entry in bad)


def test_an_unreadable_manifest_is_one_line_naming_it(tmp_path):
    (tmp_path / "m.parquet").write_bytes(b"not parquet at all")
    pytest.importorskip("pyarrow.parquet", reason="pyarrow (the parquet extra) is not installed")
    with pytest.raises(DataError, match=r"m\.parquet: cannot read the manifest"):
        list_inputs([tmp_path / "m.parquet"])


def test_a_url_decodes_to_the_same_clips_as_the_file(make_video, http_root):
    pytest.importorskip("aiohttp", reason="fsspec's HTTP file system needs aiohttp (the cloud extra)")
    _, base = http_root
    video = make_video("served/v.mp4", count=24)
    cfg = PrepareConfig(**FAST)
    local = [c.frames for c in video_clips(video, cfg, VideoStats())]
    remote = [c.frames for c in video_clips(VideoSource(f"{base}/v.mp4"), cfg, VideoStats())]
    assert len(local) == 3 and all(np.array_equal(a, b) for a, b in zip(local, remote, strict=True))


def test_prepare_from_a_manifest_with_urls_spans_and_bad_rows(make_video, http_root, tmp_path, capsys):
    """Every row is reported; the good ones (local, remote, cut to spans) are prepared."""
    pytest.importorskip("aiohttp", reason="fsspec's HTTP file system needs aiohttp (the cloud extra)")
    _, base = http_root
    make_video("served/remote.mp4", count=32, seed=1)
    make_video("local.mp4", count=40, seed=2)
    manifest = tmp_path / "videos.csv"
    manifest.write_text("url,start,end\n"
                        f"{base}/remote.mp4,0.8,\n"  # 24 frames: 3 clips
                        "local.mp4,,1.6\n"  # 16 frames: 2 clips
                        "local.mp4,2.4,4\n"  # the same file, another span: 2 clips
                        "missing.mp4,,\n"
                        f"{base}/nowhere.mp4,,\n"  # 404
                        "http://127.0.0.1:9/closed.mp4,,\n")  # nothing listens on port 9
    code = main(["prepare", str(manifest), "--out", str(tmp_path / "out"), "--size", "16", "--frames", "8",
                 "--no-stabilize", "--workers", "1", "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entries = report["videos"]
    by_status = {e["path"]: (e["status"], e["clips"]) for e in entries}
    assert by_status[f"{base}/remote.mp4#t=0.8,"] == ("ok", 3)
    assert by_status[f"{tmp_path / 'local.mp4'}#t=0,1.6"] == ("ok", 2)
    assert by_status[f"{tmp_path / 'local.mp4'}#t=2.4,4"] == ("ok", 2)
    skipped = {e["path"]: e["reason"] for e in entries if e["status"] == "skipped"}
    assert len(skipped) == 3, skipped
    assert any("missing.mp4" in p for p in skipped)
    assert "cannot open" in skipped[f"{base}/nowhere.mp4"]
    assert "cannot open" in skipped["http://127.0.0.1:9/closed.mp4"]
    summary = json.loads((tmp_path / "out" / "manifest.json").read_text())["summary"]
    assert (summary["clips_written"], summary["videos_ok"], summary["videos_skipped"]) == (7, 3, 3)
