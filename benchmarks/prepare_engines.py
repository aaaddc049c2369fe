"""`videogan prepare` engines on the same videos: the local engine and Ray, one node and two, on this machine.

    python benchmarks/prepare_engines.py [VIDEOS_DIR] [--copies K] [--features lk|sift|orb|none]
                                         [--repeats R]

Prepares every video in VIDEOS_DIR (default: the project's shared sample videos, ../shared/data/videos or
$VIDEOGAN_SAMPLE_VIDEOS), each linked K times under other names so that there are enough videos to share
(default 4: 20 videos), with the default settings, into temporary folders: the local engine with 1 and 2
workers; the Ray engine on a one-node cluster of 2 CPUs and on a two-node cluster of 1 CPU each, both started
with `ray start` on this machine and stopped afterwards; each `--repeats` times (default 2). Prints one JSON
line per run (wall time of the `prepare` call, connecting to Ray and finalising included, starting the
cluster not; source frames/s; and per core), checks that every run wrote the same clips, and ends with a
table of each engine's fastest run. Results go into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sample_data import sample_videos_dir

from videogan.bench import cpu_name
from videogan.data.decode import videos_in
from videogan.data.prepare import PrepareConfig, prepare
from videogan.data.stabilize import StabilizeSettings

RAY = Path(sys.executable).with_name("ray")  # the `ray` command installed beside this Python
# Ray starts its workers 15 steps nicer than the node by default; here they run at the local engine's
# priority, or the other work on a shared machine would slow Ray's tasks and not the local engine's.
RAY_ENV = {"RAY_worker_niceness": "0", "RAY_AUTH_MODE": "disabled"}  # loopback nodes, no token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(temp_dir: str, cpus: int, *options: str) -> subprocess.Popen:
    """A Ray node on this machine with its own ports and temporary folder, in a process group of its own (so
    that stopping it stops its processes and nothing else) but in the script's own process session: where
    the kernel shares the CPUs between sessions (autogroup), a node in a session of its own would get a
    larger share of a busy machine than the local engine's processes, and seem faster."""
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    ports = [part for flag in flags for part in (flag, str(free_port()))]
    command = [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
               "--object-store-memory", str(200 * 2**20), "--temp-dir", temp_dir, "--disable-usage-stats",
               *ports, *options]
    with open(Path(temp_dir) / "start.log", "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, process_group=0,
                                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **RAY_ENV})


class Cluster:
    """A Ray cluster on this machine: a head node and further nodes, each of `cpus[i]` CPUs."""

    def __init__(self, cpus: list[int]):
        self.port, self.nodes = free_port(), []
        self.folders = [tempfile.mkdtemp(prefix="vg-ray-") for _ in cpus]
        started = time.perf_counter()
        try:
            self.nodes.append(start_node(self.folders[0], cpus[0], "--head", "--port", str(self.port),
                                         "--include-dashboard", "false",
                                         "--ray-client-server-port", str(free_port())))
            for folder, count in zip(self.folders[1:], cpus[1:], strict=True):
                self.nodes.append(start_node(folder, count, "--address", self.address))
            self.wait_for(len(cpus))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_for(self, count: int) -> None:
        script = ("import sys, time, ray\n"
                  "ray.init(address=sys.argv[1], logging_level='WARNING')\n"
                  "end = time.monotonic() + 120\n"
                  "alive = lambda: sum(n['Alive'] for n in ray.nodes())\n"
                  "while alive() < int(sys.argv[2]) and time.monotonic() < end:\n"
                  "    time.sleep(0.2)\n"
                  "print(alive())\n")
        joined = subprocess.run([sys.executable, "-c", script, self.address, str(count)], capture_output=True,
                                text=True, timeout=180)
        if joined.stdout.strip() != str(count):
            raise SystemExit(f"Ray cluster at {self.address}: {joined.stdout.strip() or 0} of {count} nodes "
                             f"joined: {joined.stderr.strip()[-500:]}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


def linked_copies(videos: list[Path], copies: int, folder: Path) -> list[Path]:
    """Each video `copies` times under other names (symbolic links): more videos to share among cores."""
    links = []
    for k in range(copies):
        for video in videos:
            link = folder / f"copy{k}-{video.name}"
            link.symlink_to(video.resolve())
            links.append(link)
    return links


def clips_digest(out: Path) -> str:
    """One hash of every clip, whichever shard holds it: the runs must agree."""
    members = {}
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        with tarfile.open(out / shard) as tar:
            for info in tar.getmembers():
                members[info.name] = hashlib.sha256(tar.extractfile(info).read()).hexdigest()
    return hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()[:16]


def run(name: str, inputs: list[Path], cfg: PrepareConfig, cores: int, **options) -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = prepare(inputs, out, cfg, progress=False, **options)
        wall = time.perf_counter() - started
        digest = clips_digest(Path(out))
    fps = summary.frames / wall
    return {"engine": name, "cores": cores, "wall_seconds": round(wall, 2), "frames": summary.frames,
            "clips_written": summary.clips_written, "frames_per_second": round(fps, 1),
            "frames_per_second_per_core": round(fps / cores, 1),
            "partitions_seconds": round(summary.seconds, 2), "clips_sha256": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="?", type=Path, default=sample_videos_dir())
    parser.add_argument("--copies", type=int, default=4, help="links to each video (default 4)")
    parser.add_argument("--features", default="lk", choices=["lk", "sift", "orb", "none"],
                        help="stabilisation (default lk, prepare's default; none: off)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each engine (default 2)")
    args = parser.parse_args()
    os.environ.update(RAY_ENV)  # the driver (this process) too
    if not args.videos.is_dir():
        raise SystemExit(f"{args.videos}: no such folder (pass the videos folder or set "
                         "VIDEOGAN_SAMPLE_VIDEOS)")
    cfg = (PrepareConfig(stabilize=False) if args.features == "none"
           else PrepareConfig(stabilization=StabilizeSettings(method=args.features)))
    machine = {"machine": cpu_name(), "cpus": os.cpu_count(), "features": args.features}
    # (name, cores: a number for the local engine, the nodes' CPUs for Ray, the options of `prepare`)
    engines = [("local, 1 worker", 1, dict(workers=1)), ("local, 2 workers", 2, dict(workers=2)),
               ("ray, 1 node of 2 CPUs", [2], dict(engine="ray")),
               ("ray, 2 nodes of 1 CPU", [1, 1], dict(engine="ray"))]
    # Each engine `repeats` times, in order and then in reverse order (A B C D D C B A): a load that drifts
    # over the run (a shared machine) weighs on every engine alike; the table takes each one's fastest run.
    order = [e for k in range(args.repeats) for e in (engines if k % 2 == 0 else engines[::-1])]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        inputs = linked_copies(videos_in(args.videos), args.copies, Path(folder))
        print(json.dumps({**machine, "videos": len(inputs)}), flush=True)
        for name, cpus, options in order:
            if isinstance(cpus, int):
                rows.append(run(name, inputs, cfg, cpus, **options))
            else:
                cluster = Cluster(cpus)
                try:
                    rows.append({**run(name, inputs, cfg, sum(cpus), address=cluster.address, **options),
                                 "cluster_start_seconds": round(cluster.start_seconds, 1)})
                finally:
                    cluster.stop()
            print(json.dumps(rows[-1]), flush=True)
    if len({row["clips_sha256"] for row in rows}) != 1:
        raise SystemExit("the engines wrote different clips")
    best = {name: min((r for r in rows if r["engine"] == name), key=lambda r: r["wall_seconds"])
            for name, _, _ in engines}
    base = best[engines[0][0]]["wall_seconds"]
    print("\n| engine | cores | wall (s), fastest of each run | source frames/s | per core | "
          "speed-up over local, 1 worker |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in best.items():
        walls = ", ".join(str(r["wall_seconds"]) for r in rows if r["engine"] == name)
        print(f"| {name} | {row['cores']} | {row['wall_seconds']} ({walls}) | {row['frames_per_second']} | "
              f"{row['frames_per_second_per_core']} | {base / row['wall_seconds']:.2f}x |")

if __name__ == "__main__":
    main()
