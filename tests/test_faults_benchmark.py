"""benchmarks/faults.py, the fault-injection campaign: its judging, measuring and fault-making parts (the
campaign itself takes minutes and is run by hand)."""
import http.server
import importlib.util
import io
import json
import pickletools
import random
import signal
import socket
import struct
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
_spec = importlib.util.spec_from_file_location("faults", _SCRIPT)
faults = importlib.util.module_from_spec(_spec)
sys.modules["faults"] = faults  # dataclasses look their module up by name
_spec.loader.exec_module(faults)


@pytest.mark.parametrize("returncode,stderr,sent,verdict", [
    (0, "", None, None),
    (2, "videogan: error: run/config.json: cannot read the run's config (bad)\n", None, None),
    (2, "videogan train: error: argument --steps: expected a positive integer, got '0'\n", None, None),
    (2, "usage: videogan train [-h]\nvideogan train: error: argument --steps: bad\n", None, None),  # argparse
    (2, "videogan-data:0: DataWarning: a.tar: skipped\nvideogan: error: data: no shard\n", None, None),
    (130, "videogan: interrupted\n", None, None),
    (143, "videogan: SIGTERM received\nvideogan: stopped by SIGTERM at step 6; checkpoint c\n", None, None),
    (1, "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n", None, "traceback"),
    (0, "Exception ignored in: <function f>\nTraceback (most recent call last):\n  ...\n", None, "traceback"),
    (2, "videogan: error: the first line\nand a second one\n", None, "error message of several lines"),
    (1, "something went wrong\n", None, "failed without a 'videogan: ...' message"),
    (2, "", None, "failed without a 'videogan: ...' message"),
    (-9, "", signal.SIGKILL, None),  # the kill this harness sent
    (-9, "", None, "died of SIGKILL"),
    (-15, "", signal.SIGKILL, "died of SIGTERM"),
    (-11, "Fatal Python error: Segmentation fault\n", None, "died of SIGSEGV"),
])
def test_one_line_rule(returncode, stderr, sent, verdict):
    assert faults.not_one_line(returncode, stderr, sent) == verdict


def _try(category, *problems, lost=False, one_line=True, peak=100.0, skipped=None):
    return faults.Try(category, "x", list(problems), lost, not one_line, peak, skipped)


def test_the_table_counts_tries_and_each_problem_once_per_try():
    tries = [
        _try("kills", peak=300),
        _try("kills", "resume: traceback", "resume: traceback", one_line=False, peak=450.4),
        _try("kills", "final weights differ", "resume: traceback", lost=True, one_line=False),
        _try("disk", skipped="cannot mount a tmpfs here (permission denied)"),
        _try("server", "answered 500 | oops"),
    ]
    rows = faults.summarise(tries)
    assert [r["category"] for r in rows] == ["kills", "disk", "server"]
    kills = rows[0]
    assert (kills["tries"], kills["survived"], kills["data_lost"], kills["not_one_line"]) == (3, 1, 1, 2)
    assert kills["peak_mb"] == 450.4
    assert dict(kills["problems"]) == {"resume: traceback": 2, "final weights differ": 1}
    lines = faults.table(rows).splitlines()
    assert lines[0].startswith("| category | tries | survived | data lost | not one line | peak memory MB |")
    assert lines[2] == "| kills | 3 | 1 | 1 | 2 | 450 | resume: traceback (2); final weights differ (1) |"
    assert lines[3] == "| disk | 0 |  |  |  |  | skipped: cannot mount a tmpfs here (permission denied) |"
    assert lines[4] == "| server | 1 | 0 | 0 | 0 | 100 | answered 500 \\| oops (1) |"  # no pipe ends a cell


def test_run_reports_the_signal_it_sent_peak_memory_and_processes_left_behind(tmp_path):
    killed = faults.run([sys.executable, "-c", "import time; time.sleep(30)"], signal_at=0.3)
    assert (killed.returncode, killed.sent_signal) == (-signal.SIGKILL, signal.SIGKILL)
    assert not killed.timed_out
    assert faults.not_one_line(killed.returncode, killed.stderr, killed.sent_signal) is None

    # Linux counts a child's peak from the starting process's own size (this one holds torch), so, as the
    # campaign does, measure from a small process.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import faults; "
            "print([faults.run([sys.executable, '-c', c]).peak_mb "
            "for c in ('pass', 'x = bytearray(200 << 20); x[::4096] = b\"1\" * len(x[::4096])')])")
    small, big = json.loads(faults.run([sys.executable, "-c", code, str(_SCRIPT.parent)]).stdout)
    assert small < 100 and 200 < big < 300

    hung = faults.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert hung.timed_out and hung.returncode == -signal.SIGKILL

    # A child that leaves a process of its group running when it exits: counted, and killed.
    pid_file = tmp_path / "pid"
    code = ("import subprocess, sys; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))")
    left = faults.run([sys.executable, "-c", code], stray_grace=0.3)
    assert left.returncode == 0 and left.strays == 1
    assert _ended(int(pid_file.read_text()))


def test_commands_meet_ctrl_c_even_when_the_harness_was_started_with_it_ignored():
    # As a shell starts a background job: SIGINT ignored, which exec would pass on to every command.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "sys.path.insert(0, sys.argv[1]); import faults; faults.meet_signals_as_from_a_terminal(); "
            "print(faults.run(['sleep', '30'], signal_at=0.3, sig=signal.SIGINT, timeout=10).returncode)")
    done = faults.run([sys.executable, "-c", code, str(_SCRIPT.parent)], timeout=60)
    assert done.stdout.strip() == str(-signal.SIGINT), done.stderr


def _ended(pid: int, wait: float = 5.0) -> bool:
    """Whether process `pid` is gone, or a zombie, within `wait` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def test_judge_records_what_is_wrong_with_a_step():
    t = faults.Try("c", "x")
    t.judge(faults.Outcome(["python"], 2, "", "videogan: error: a\nb\n", 1.0, 50.0), "resume")
    t.judge(faults.Outcome(["python"], 0, "", "", 1.0, 70.0, strays=2), "rerun")
    killed = faults.Outcome(["python"], -9, "", "", 1.0, 60.0, sent_signal=signal.SIGKILL)
    t.judge(killed, "killed run", exits=None)
    t.judge(faults.Outcome(["python"], 1, "", "videogan: error: a\n", 1.0, 10.0), "report", exits={0, 2})
    assert t.problems == ["resume: error message of several lines", "rerun: processes left running",
                          "report: exit 1"]
    assert t.not_one_line and not t.survived and t.peak_mb == 70.0 and not t.data_lost


def _tar_with(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_damage_breaks_the_jpegs_and_keeps_the_tar_readable(tmp_path):
    jpeg = bytes(random.Random(0).randbytes(1000))
    meta = b'{"frames": 16}'
    for how in ("flip", "eoi"):
        shard = tmp_path / f"{how}.tar"
        _tar_with(shard, {"k.jpg": jpeg, "k.json": meta})
        faults.damage(shard, how)
        with tarfile.open(shard) as tar:  # the tar itself is intact: only the image inside is damaged
            got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert got["k.json"] == meta and len(got["k.jpg"]) == len(jpeg)
        changed = [i for i in range(len(jpeg)) if got["k.jpg"][i] != jpeg[i]]
        if how == "flip":
            assert changed == list(range(500, 516))
            assert all(got["k.jpg"][i] == jpeg[i] ^ 0xFF for i in changed)
        else:
            assert got["k.jpg"][400:402] == b"\xff\xd9" and set(changed) <= {400, 401}
    shard = tmp_path / "t.tar"
    _tar_with(shard, {"k.jpg": jpeg})
    size = shard.stat().st_size
    faults.damage(shard, "truncate")
    assert shard.stat().st_size == int(size * 0.6)
    faults.damage(shard, "empty")
    assert shard.stat().st_size == 0


def _fake_run(root: Path, weights: bytes, steps: list[int]) -> Path:
    final = root / "checkpoints" / f"step_{faults.STEPS:08d}"
    final.mkdir(parents=True)
    (final / "checkpoint.json").write_text("{}")
    for name in faults.WEIGHT_FILES:
        (final / f"{name}.safetensors").write_bytes(weights + name.encode())
    rows = [{"step": s, "d_loss": s / 10, "time": random.random(), "seconds_per_step": 0.1} for s in steps]
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_compare_run_finds_lost_weights_repeated_logs_and_leftovers(tmp_path):
    ref = _fake_run(tmp_path / "ref", b"w", [2, 4, 6])
    same = _fake_run(tmp_path / "same", b"w", [2, 4, 6])
    assert faults.compare_run(same, ref) == []  # its timing fields differ: they may

    other = _fake_run(tmp_path / "other", b"v", [2, 4, 4, 6])
    (other / "checkpoints" / ".step_00000008.tmp").mkdir()
    (other / ".config.abc.json").write_text("{")
    found = {text: (lost, detail) for text, lost, detail in faults.compare_run(other, ref)}
    weights = found["final weights differ from the uninterrupted run's"]
    assert weights == (True, ", ".join(faults.WEIGHT_FILES))
    assert found["metrics.jsonl logs a step twice"] == (False, "steps [4]")
    assert found["temporary files left behind"] == (False, ".step_00000008.tmp, .config.abc.json")
    assert "metrics.jsonl losses differ from the uninterrupted run's" not in found  # the same ones, twice

    missing = tmp_path / "missing"
    missing.mkdir()
    found = [(text, lost) for text, lost, _ in faults.compare_run(missing, ref)]
    assert ("no final checkpoint", True) in found


def test_compare_prepared_ignores_timing_only(tmp_path):
    def prepared(root: Path, shard: bytes, seconds: float) -> Path:
        root.mkdir()
        (root / "clips-000000.tar").write_bytes(shard)
        manifest = {"shards": ["clips-000000.tar"], "summary": {"clips": 5, "seconds": seconds}}
        (root / "manifest.json").write_text(json.dumps(manifest))
        report = {"videos": [{"path": "a.mp4", "clips": 5, "seconds": seconds}]}
        (root / "report.json").write_text(json.dumps(report))
        return root

    ref = prepared(tmp_path / "ref", b"abc", 1.0)
    assert faults.compare_prepared(prepared(tmp_path / "same", b"abc", 2.5), ref) == []
    other = prepared(tmp_path / "other", b"abd", 1.0)
    (other / ".clips-000001.x.tar").write_bytes(b"")
    assert [(text, lost) for text, lost, _ in faults.compare_prepared(other, ref)] == [
        ("shard bytes differ from the uninterrupted run's", True), ("temporary files left behind", False)]


def test_kill_points_skip_fsync_and_spread_over_the_write():
    events = ["os.mkdir .step_8.*", "save_file generator.safetensors", "os.fsync generator.safetensors",
              "save_file discriminator.safetensors", "os.replace .step_8.* -> step_8", "os.fsync checkpoints",
              "shutil.rmtree step_4", "(the write returned)"]
    every = faults.kill_points(events, faults.FULL)
    assert [p for p, _ in every] == ["0", "1", "3", "4", "6", "7", "1/torn", "3/torn"]
    assert every[-1][1] == "half-way through save_file discriminator.safetensors"
    assert every[0][1] == "before os.mkdir .step_8.*"
    quick = faults.kill_points(events, faults.QUICK)
    assert [p for p, _ in quick] == ["0", "3", "7", "1/torn"]  # the first, a middle and the last; one torn


def test_masked_names_compare_across_runs():
    assert faults.masked("/run/checkpoints/.step_00000008.k2j_x9qa") == ".step_00000008.*"
    assert faults.masked("/run/checkpoints/.checkpoint.ab12cd34.json") == ".checkpoint.*.json"
    assert faults.masked("/run/checkpoints/step_00000008/generator.safetensors") == "generator.safetensors"


def test_fuzzed_commands_are_seeded_and_aim_only_at_the_given_files(tmp_path):
    names = {"run": "run", "file": "f.txt", "dir": "d", "missing": "no", "image": "i.png",
             "empty_image": "e.jpg", "bomb": "b.png", "out": "out"}
    p = {**{key: str(tmp_path / name) for key, name in names.items()}, "video": "/videos/tree.avi",
         "non_utf8": bytes(tmp_path) + b"/\xff"}
    defaults = {"model.size": 64, "train.lr_g": 2e-4, "train.augment": "", "train.tf32": True}
    first = [faults.fuzz_argv(random.Random(f"7/{i}"), p, defaults) for i in range(200)]
    assert first == [faults.fuzz_argv(random.Random(f"7/{i}"), p, defaults) for i in range(200)]
    commands = {tuple(a[:2]) if a[:1] in (["study"], ["bench"]) else tuple(a[:1]) for a in first}
    assert {("train",), ("prepare",), ("generate",), ("study", "create"), ("evaluate",)} <= commands
    for argv in first:
        for arg in argv:
            text = arg.decode(errors="replace") if isinstance(arg, bytes) else arg
            if text.startswith("/"):  # every absolute path is a given file, below one, or /dev/null
                assert text == "/dev/null" or text.startswith((str(tmp_path), "/videos/")), argv
        if argv[:1] == ["train"] and "--out" in argv:  # a right training command costs one step
            assert argv[argv.index("--steps") + 1] in ("1", "0", "-3", "x", "", "1.5")


def test_hostile_files_say_what_they_claim(tmp_path):
    data = faults.safetensors_claiming([1 << 40])
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    assert header["weight"]["shape"] == [1 << 40] and header["weight"]["data_offsets"] == [0, 4 << 40]
    assert len(data) == 8 + length + 16  # and 16 bytes where it claims 4 TiB

    evil = faults.evil_pickle(tmp_path / "ran")
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(evil)]  # read, never run
    assert ("GLOBAL", "os system") in ops and ("REDUCE", None) in ops

    nested = faults.t7_nested_tables(3)
    assert struct.unpack("<iii", nested[:12]) == (3, 1, 1) and len(nested) == 3 * 24 + 4
    assert faults.nested_json(2) == '{"step": [[]]}'


def test_raw_request_reads_the_status_or_says_what_happened():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        get = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert faults.raw_request(server.server_address[1], get) == (404, None)
    finally:
        server.shutdown()
        server.server_close()

    with socket.socket() as silent:  # reads a request, then closes without a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()

        def read_and_close():
            for _ in range(2):
                conn = silent.accept()[0]
                conn.recv(1024)
                conn.close()

        threading.Thread(target=read_and_close, daemon=True).start()
        port = silent.getsockname()[1]
        answer = faults.raw_request(port, b"GET / HTTP/1.1\r\n\r\n", timeout=5)
        assert answer == (None, "closed without a response")
        assert faults.raw_request(port, b"GET / HTTP/1.1\r\n", close_after_send=True) == (None, None)
    assert faults.raw_request(faults.free_port(), b"x")[1] == "ConnectionRefusedError"


def test_malformed_requests_are_all_well_formed_bytes_but_wrong():
    cases = faults.malformed_requests("3", "ab12")
    names = [name for name, _, _ in cases]
    assert len(names) == len(set(names)) and all(isinstance(payload, bytes) for _, payload, _ in cases)
    unanswered = [name for name, _, due in cases if not due]
    assert unanswered == ["headers cut short, then closed", "body cut short, then closed"]
    body = dict((n, p) for n, p, _ in cases)["body over 2 KB"]
    assert b"Content-Length: 5000\r\n" in body and body.endswith(b" " * 5000)


def test_the_cli_keeps_the_one_line_rule_on_a_bad_argument(tmp_path):
    o = faults.run(faults.videogan("train", "--steps", "0", "--out", str(tmp_path / "run")), timeout=120)
    assert o.returncode == 2 and faults.not_one_line(o.returncode, o.stderr) is None, o.stderr
    assert not (tmp_path / "run").exists()
