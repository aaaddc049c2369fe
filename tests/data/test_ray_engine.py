"""`videogan prepare --engine ray`: the partitions as Ray tasks on a real two-node Ray cluster that the test
starts on this machine (`ray start`, as on real machines), giving the same clips as the local engine. The
nodes are asked for 127.0.0.1; Ray deliberately registers a loopback node under the machine's own address
(ray._private.services.resolve_ip_for_localhost), so nothing leaves the machine but the address differs."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from videogan.cli import main

RAY = Path(sys.executable).with_name("ray")  # the `ray` command installed beside this Python
OPTIONS = ["--size", "16", "--frames", "8", "--no-stabilize", "--clips-per-shard", "3", "--quiet"]
NAMES = [f"v{i}.mp4" for i in range(5)] + ["missing.mp4"]  # five videos of 2 to 6 clips, and a typo
# A cluster of loopback nodes that lives for the test: no usage reports, and no token authentication, which
# would otherwise depend on whatever token ~/.ray/auth_token holds on the machine.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
ENV.pop("RAY_ADDRESS", None)

# Run in a subprocess: connect to the cluster and wait until both of its nodes have joined.
TWO_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="WARNING")
deadline = time.monotonic() + 60
while sum(node["Alive"] for node in ray.nodes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.2)
print(sum(node["Alive"] for node in ray.nodes()))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(temp_dir: str, log: Path, *options: str) -> subprocess.Popen:
    """One Ray node of one CPU on this machine, with its own temporary folder and ports (two nodes share this
    host), blocking in the foreground in a process group of its own: the group holds the node's processes
    (raylet, workers, the head's GCS), so that the teardown stops exactly these and nothing else of Ray's."""
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    ports = [part for flag in flags for part in (flag, str(free_port()))]
    command = [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--object-store-memory", str(100 * 2**20), "--temp-dir", temp_dir, "--disable-usage-stats",
               *ports, *options]
    with open(log, "w") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """The address of a two-node Ray cluster (a head and a second node, one CPU each), and the nodes'
    temporary folders (their logs show which node ran what)."""
    port = free_port()
    folders = [tempfile.mkdtemp(prefix="vg-ray-") for _ in range(2)]  # short: Ray puts sockets inside
    nodes = []
    try:
        nodes.append(start_node(folders[0], Path(folders[0]) / "start.log", "--head", "--port", str(port),
                                "--include-dashboard", "false", "--ray-client-server-port", str(free_port())))
        nodes.append(start_node(folders[1], Path(folders[1]) / "start.log", "--address", f"127.0.0.1:{port}"))
        joined = subprocess.run([sys.executable, "-c", TWO_NODES, f"127.0.0.1:{port}"], capture_output=True,
                                text=True, env=ENV, timeout=120)
        assert joined.stdout.strip() == "2", joined.stderr[-2000:]
        yield f"127.0.0.1:{port}", [Path(f) for f in folders]
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGKILL)  # only this cluster's processes: the groups started here
            node.wait()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def inputs(make_video, tmp_path):
    """The videos' names, relative to tmp_path, where the commands run: relative inputs and output must
    mean the same in the cluster's worker processes, which Ray started elsewhere."""
    for i in range(5):
        make_video(NAMES[i], count=16 + 8 * i, seed=i)
    return NAMES


def shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("clips-*.tar"))}


def without_times(path: Path) -> dict:
    """A manifest or report without the seconds each run took."""
    data = json.loads(path.read_text())
    data.get("summary", {}).pop("seconds", None)
    for entry in data.get("videos", []):
        entry.pop("seconds", None)
    return data


def prepare_with_ray(args: list[str], address: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "videogan", "prepare", *args, "--engine", "ray", "--address", address]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=180)


def test_ray_engine_on_a_two_node_cluster_gives_the_local_engines_clips(ray_cluster, inputs, tmp_path,
                                                                       monkeypatch, capsys):
    address, node_folders = ray_cluster
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", *inputs, "--out", "local", "--partitions", "5", "--workers", "1", *OPTIONS]) == 0
    local = json.loads(capsys.readouterr().out)

    # A partition that raises (here: its state file is unreadable) is named in one line; the others finish.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / ".prepare-state-p00002.json").write_text("{not json")
    failed = prepare_with_ray([*inputs, "--out", "ray", *OPTIONS], address, tmp_path)
    assert failed.returncode == 2, failed.stderr[-3000:]
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("videogan: error: ray: 1 of 5 partitions failed (2); first, partition 2/5: ")
    assert ".prepare-state-p00002.json: unreadable" in error and "run the same command again" in error
    assert sorted(p.name for p in (tmp_path / "ray").glob("done-*")) == [
        f"done-p{i:05d}.json" for i in (0, 1, 3, 4)]
    assert not (tmp_path / "ray" / "manifest.json").exists()

    # Fixed, the same command runs only what is left (the default: one partition per video, as above).
    (tmp_path / "ray" / ".prepare-state-p00002.json").unlink()
    done = prepare_with_ray([*inputs, "--out", "ray", *OPTIONS], address, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["resumed"]
    assert {k: summary[k] for k in ("clips_written", "videos_ok", "videos_skipped", "frames", "shards")} == {
        k: local[k] for k in ("clips_written", "videos_ok", "videos_skipped", "frames", "shards")}
    assert summary["clips_written"] == 20 and summary["videos_skipped"] == 1

    ray_shards, local_shards = shards(tmp_path / "ray"), shards(tmp_path / "local")
    assert ray_shards == local_shards and len(ray_shards) == 8  # byte for byte; 2-6 clips, 3 a shard
    for name in ("manifest.json", "report.json"):
        assert without_times(tmp_path / "ray" / name) == without_times(tmp_path / "local" / name)

    # Both nodes ran partitions: each node's worker logs name the task.
    ran = [sum("run_partition" in log.read_text(errors="replace")
               for log in folder.glob("session_*/logs/worker-*")) for folder in node_folders]
    assert all(ran), ran


def test_ray_engine_errors_are_one_line(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    alone = "--partition I/N runs one partition by itself"
    bad = {
        ("--out", "o", "--address", "auto"): "--address is the Ray cluster's: give it with --engine ray",
        ("--out", "o", "--engine", "ray", "--partition", "0/2"): alone,
        ("--out", "o", "--partitions", "3", "--partition", "0/2"): alone,
        ("--out", "o", "--engine", "ray", "--workers", "2"): "--workers is the local engine's",
    }
    for args, message in bad.items():
        assert main(["prepare", *inputs, *args, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["prepare", "--finalize", "o", "--engine", "ray"]) == 2
    assert "--finalize OUT takes no" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    assert main(["prepare", *inputs, "--out", "o", "--engine", "ray", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("videogan: error: prepare --engine ray needs Ray: install it with "
                   "pip install 'videogan[ray]'\n")
    assert not (tmp_path / "o").exists()
