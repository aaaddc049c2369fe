"""Fault injection: kills, corrupt and hostile input, a full disk, fuzzed commands and a loaded study server,
each judged against what the project promises, on the `tiny` preset in a few minutes.

    python benchmarks/faults.py [--quick] [--seed S] [--jobs N] [--out runs/faults] [--only CATEGORY ...]

Every command runs as a process of its own (`python -m videogan ...`, one thread), in a temporary work folder,
and is judged from outside: exit status, stderr, the files it leaves, processes left running, peak memory (of
the process and the children it waited for, from wait4; Linux counts it from the resident size of the process
that started it, so the harness keeps itself small and reports its own size as the floor). The categories:

  train-kill       SIGKILL `train` at random times, resume, compare the final checkpoint byte for byte with an
                   uninterrupted run's (and metrics.jsonl's losses with its losses)
  train-signal     SIGTERM (to the process) or SIGINT (to its group, as Ctrl-C): a clean exit that checkpoints
                   its progress, then resume and compare
  checkpoint-kill  SIGKILL just before each file-system call of one checkpoint write (the calls are recorded
                   by a first, uninterrupted run), and half-way through each safetensors file; then resume and
                   compare
  prepare-kill     SIGKILL `prepare` at random times, run it again, compare shards, manifest and report
  corrupt-shards   train on shards with a truncated tar, flipped JPEG bytes, an early end-of-image, a
                   zero-byte tar
  full-disk        train and prepare into a small tmpfs (skipped, with the reason, where mounting fails), then
                   move the output to a large disk, finish and compare
  cli-fuzz         random command lines and --set values, seeded
  hostile-files    safetensors headers claiming huge tensors, a pickle renamed .safetensors, hostile .t7
                   files, wrong-typed checkpoint.json and config.json: a one-line error, under 1 GB
  study-server     36 raters at once, malformed requests, idle connections and a SIGKILL of the server; `study
                   report` on what the kill left and on a hot rollback journal

A try survives when it ends as promised: the expected exit status, at most one line of error (no traceback,
no death by a signal it was not sent), nothing lost, no process or temporary file left behind, no 5xx or reset
from the server, memory under 1 GB where that is the goal. Prints one table (also OUT/faults.md) and writes
every try's details to OUT/faults.json. The same --seed gives the same kill times, fuzzed commands and
choices.

`faults.py --kill-inside-checkpoint ...` is the injector the checkpoint-kill category runs (inject_and_run),
`faults.py --make-fixtures DIR` the helper that builds what needs torch (make_fixtures).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import functools
import http.client
import io
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VIDEOGAN = [sys.executable, "-m", "videogan"]
MEMORY_GOAL_MB = 1024  # what a hostile file may cost at most
# The address space of fuzzed and hostile runs: a runaway allocation fails instead of filling the machine.
ADDRESS_SPACE_MB = 4096
IDLE_LIMIT_S = 30  # a connection that sends nothing for this long should have been closed by the study server
INJECT_FLAG = "--kill-inside-checkpoint"
FIXTURES_FLAG = "--make-fixtures"

# The training run every kill is compared with: tiny preset, 16 steps, a checkpoint every 4 (the newest one
# kept, so each write also deletes the one before), a DataLoader worker (a process that must not outlive a
# kill).
STEPS, CHECKPOINT_EVERY = 16, 4
TRAIN_SETS = [f"train.checkpoint_every={CHECKPOINT_EVERY}", "train.keep_checkpoints=1", "train.log_every=2",
              "train.sample_every=0", "train.num_threads=1", "data.workers=1"]
WEIGHT_FILES = ("generator", "generator_ema", "discriminator", "training_state")
TIMING_FIELDS = {"seconds_per_step", "clips_per_second", "time"}  # the metrics.jsonl fields that may differ
TARGET_WRITE = 2  # checkpoint-kill: the write at step 8, which has a checkpoint before it to keep or delete

# prepare: four of the sample videos, unstabilised, 5 clips a shard (11 shards): ~8 s on 2 cores.
PREPARE_VIDEOS = ("tree.avi", "Megamind.avi", "bigbuckbunny.mp4", "box.mp4")
PREPARE_ARGS = ["--size", "32", "--frames", "16", "--no-stabilize", "--clips-per-shard", "5",
                "--workers", "2", "--quiet"]


# ----------------------------------------------------------------------------- one process, measured

@dataclass
class Outcome:
    """How one process ended."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float  # the largest resident set of the process and of the children it waited for
    sent_signal: int | None = None  # what this harness sent it (or it sent itself, for checkpoint-kill)
    timed_out: bool = False
    strays: int = 0  # processes of its group still running after it ended (then killed)


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def with_address_limit(cmd: list, megabytes: int) -> list:
    """`cmd` under an address-space limit, exec'd in place: the pid, and so wait4's figures, stay its own."""
    code = ("import os, resource, sys; n = int(sys.argv[1]) << 20; "
            "resource.setrlimit(resource.RLIMIT_AS, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")
    return [sys.executable, "-c", code, str(megabytes), *cmd]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state, _, group = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and int(group) == pgid:
            found.append(int(entry))
    return found


def stop_group(pgid: int, grace: float = 6.0) -> int:
    """How many processes were left in the group of an ended process after `grace` seconds (a DataLoader
    worker checks for its parent every 5 s); they are killed then (this harness started them all)."""
    deadline = time.monotonic() + grace
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


class Child:
    """A process in a process group of its own, measured by wait4 when it ends."""

    def __init__(self, cmd: list, cwd: Path | None = None, memory_limit_mb: int | None = None):
        self.command = [os.fsdecode(c) for c in cmd]
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(with_address_limit(cmd, memory_limit_mb) if memory_limit_mb else cmd,
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, cwd=cwd,
                                     env=child_env(), start_new_session=True)
        self.pid = self.proc.pid
        self.sent_signal: int | None = None
        self.timed_out = False
        self._lock = threading.Lock()
        self._ended = False

    def send(self, sig: int, group: bool = False) -> bool:
        """Signal the process (or its whole group, as a terminal's Ctrl-C does), unless it has ended."""
        with self._lock:
            if self._ended:
                return False
            try:
                os.killpg(self.pid, sig) if group else os.kill(self.pid, sig)
            except ProcessLookupError:
                return False
            self.sent_signal = self.sent_signal or sig
            return True

    def running(self) -> bool:
        """Whether it has not ended yet. Never reaps it (Popen.poll would; wait4 would then find nothing)."""
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def stderr_so_far(self) -> str:
        return _read_all(self._err)

    def _time_out(self) -> None:
        if self.send(signal.SIGKILL, group=True):
            self.timed_out = True

    def wait(self, timeout: float, stray_grace: float = 6.0) -> Outcome:
        timer = threading.Timer(timeout, self._time_out)
        timer.daemon = True
        timer.start()
        try:
            # Ended but not reaped: its pid cannot be reused while a timer might still signal it.
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            with self._lock:
                self._ended = True
        finally:
            timer.cancel()
        _, status, usage = os.wait4(self.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        strays = stop_group(self.pid, stray_grace)
        outcome = Outcome(self.command, self.proc.returncode, _read_all(self._out), _read_all(self._err),
                          round(time.monotonic() - self.started, 2), round(usage.ru_maxrss / 1024, 1),
                          self.sent_signal, self.timed_out, strays)
        self._out.close()
        self._err.close()
        return outcome


def _read_all(f) -> str:
    """A child's output file, read without moving the offset the child writes at."""
    return os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0).decode(errors="replace")


def run(cmd: list, timeout: float = 300.0, signal_at: float | None = None, sig: int = signal.SIGKILL,
        group: bool = False, cwd: Path | None = None, memory_limit_mb: int | None = None,
        once: Callable[[], bool] | None = None, stray_grace: float = 6.0) -> Outcome:
    """Run `cmd` to its end (or `timeout`), sending `sig` `signal_at` seconds after it started, or after
    `once()` first holds (polled), if it is still running then."""
    child = Child(cmd, cwd, memory_limit_mb)
    stop = threading.Event()

    def signal_later() -> None:
        while once is not None and not once() and child.running() and not stop.wait(0.05):
            pass
        if not stop.wait(signal_at):
            child.send(sig, group)

    if signal_at is not None:
        threading.Thread(target=signal_later, daemon=True).start()
    try:
        return child.wait(timeout, stray_grace)
    finally:
        stop.set()


def videogan(*args) -> list:
    return [*VIDEOGAN, *args]


# ----------------------------------------------------------------------------- judging

TRACEBACK = re.compile(r"^(Traceback \(most recent call last\):|Fatal Python error)", re.M)
# The CLI's own one-line messages: "videogan: error: ...", "videogan: stopped by SIGTERM ...", and argparse's
# "videogan train: error: ...".
MESSAGE_LINE = re.compile(r"^videogan(?: [\w-]+)*: ")


def not_one_line(returncode: int, stderr: str, sent_signal: int | None = None) -> str | None:
    """Why a process's ending broke the one-line rule, or None if it kept it: death by a signal it was not
    sent, a traceback anywhere on stderr, or a failure whose last stderr line is not the CLI's one-line
    message (`videogan: error: ...`; no such line, or more lines after it)."""
    if returncode < 0:
        return None if -returncode == sent_signal else f"died of {signal.Signals(-returncode).name}"
    if TRACEBACK.search(stderr):
        return "traceback"
    if returncode == 0:
        return None
    lines = [line for line in stderr.splitlines() if line.strip()]
    marked = [i for i, line in enumerate(lines) if MESSAGE_LINE.match(line)]
    if not marked:
        return "failed without a 'videogan: ...' message"
    if marked[-1] != len(lines) - 1:
        return "error message of several lines"
    return None


@dataclass
class Try:
    """One fault and what came of it. Problems are short generic phrases, so that the table can count them."""

    category: str
    name: str
    problems: list[str] = field(default_factory=list)
    data_lost: bool = False
    not_one_line: bool = False
    peak_mb: float = 0.0
    skipped: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def survived(self) -> bool:
        return self.skipped is None and not self.problems

    def problem(self, text: str, lost: bool = False, detail: str | None = None) -> None:
        self.problems.append(text)
        self.data_lost |= lost
        if detail:
            self.details.setdefault("findings", []).append(f"{text}: {detail}")

    def judge(self, outcome: Outcome, step: str, exits: set[int] | None = frozenset({0})) -> Outcome:
        """Record `outcome` as this try's `step` and what is wrong with it; `exits`: the exit statuses that
        are right (None: any, for a run that is killed on purpose)."""
        self.peak_mb = max(self.peak_mb, outcome.peak_mb)
        self.details[step] = {"command": shown(outcome.command), "exit": outcome.returncode,
                              "seconds": outcome.seconds, "peak_mb": outcome.peak_mb,
                              "stderr": tail(outcome.stderr)}
        why = not_one_line(outcome.returncode, outcome.stderr, outcome.sent_signal)
        killed_by_us = outcome.sent_signal is not None and outcome.returncode == -outcome.sent_signal
        if outcome.timed_out:
            self.problem(f"{step}: timed out")
        elif why:
            self.not_one_line = True
            self.problem(f"{step}: {why}")
        elif exits is not None and outcome.returncode not in exits and not killed_by_us:
            self.problem(f"{step}: exit {outcome.returncode}")
        if outcome.strays:
            self.problem(f"{step}: processes left running", detail=f"{outcome.strays}")
        return outcome


_WORK: list[str] = []  # the work folder, replaced by $WORK in the details


def shown(command: list[str]) -> str:
    text = " ".join(command).replace(sys.executable, "python")
    for work in _WORK:
        text = text.replace(work, "$WORK")
    return text if len(text) < 400 else text[:400] + "..."


def tail(text: str, lines: int = 3) -> list[str]:
    kept = [line[:300] for line in text.splitlines() if line.strip()][-lines:]
    return [shown([line]) for line in kept]


# ----------------------------------------------------------------------------- the table

def summarise(tries: list[Try]) -> list[dict]:
    """One row per category, in the order the categories first appear."""
    rows = []
    for category in dict.fromkeys(t.category for t in tries):
        group = [t for t in tries if t.category == category]
        done = [t for t in group if t.skipped is None]
        counts = Counter(p for t in done for p in dict.fromkeys(t.problems))  # a problem counts once per try
        rows.append({
            "category": category, "tries": len(done), "survived": sum(t.survived for t in done),
            "data_lost": sum(t.data_lost for t in done), "not_one_line": sum(t.not_one_line for t in done),
            "peak_mb": max((t.peak_mb for t in done), default=0.0), "problems": counts.most_common(),
            "skipped": sorted({t.skipped for t in group if t.skipped}),
        })
    return rows


def table(rows: list[dict], most: int = 4) -> str:
    """Markdown: tries, survived, data lost, not one line, peak memory, and the commonest problems (with the
    number of tries each hit) or why the category was skipped."""
    lines = ["| category | tries | survived | data lost | not one line | peak memory MB | problems (tries) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        notes = [f"{text} ({n})" for text, n in r["problems"][:most]]
        if len(r["problems"]) > most:
            notes.append(f"{len(r['problems']) - most} more")
        notes += [f"skipped: {reason}" for reason in r["skipped"]]
        cells = [r["category"], str(r["tries"])]
        if r["tries"]:
            cells += [str(r["survived"]), str(r["data_lost"]), str(r["not_one_line"]), f"{r['peak_mb']:.0f}"]
        else:
            cells += ["", "", "", ""]
        cells.append("; ".join(notes).replace("|", "\\|") or "none")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- what runs are compared on

def train_args(run_dir: Path, steps: int = STEPS) -> list[str]:
    sets = [a for s in TRAIN_SETS for a in ("--set", s)]
    return ["train", "--preset", "tiny", "--out", str(run_dir), "--steps", str(steps), "--batch-size", "8",
            "--seed", "0", "--quiet", *sets]


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step_*/checkpoint.json"))


def recovery_args(run_dir: Path) -> list[str]:
    """What a user runs after an interruption: --resume where a checkpoint was written, else the command."""
    if has_checkpoint(run_dir):
        return ["train", "--out", str(run_dir), "--resume", "--steps", str(STEPS), "--quiet"]
    return train_args(run_dir)


def same_bytes(a: Path, b: Path) -> bool:
    return (a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size
            and a.read_bytes() == b.read_bytes())


def logged_losses(path: Path) -> list[tuple[int, dict]]:
    """(step, the row without its timing fields) per line of a metrics.jsonl."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows.append((row["step"], {k: v for k, v in row.items() if k not in TIMING_FIELDS}))
            except (json.JSONDecodeError, KeyError, TypeError):
                rows.append((-1, {"unreadable": line[:80]}))
    return rows


def leftovers(folder: Path, expected: Callable[[str], bool]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not expected(p.name)) if folder.is_dir() else []


def compare_run(run_dir: Path, ref: Path, steps: int = STEPS) -> list[tuple[str, bool, str]]:
    """(problem, data lost, detail) for a finished run against the uninterrupted reference run."""
    found = []
    final, ref_final = (d / "checkpoints" / f"step_{steps:08d}" for d in (run_dir, ref))
    if not (final / "checkpoint.json").is_file():
        found.append(("no final checkpoint", True, final.name))
    else:
        differ = [n for n in WEIGHT_FILES
                  if not same_bytes(final / f"{n}.safetensors", ref_final / f"{n}.safetensors")]
        if differ:
            found.append(("final weights differ from the uninterrupted run's", True, ", ".join(differ)))
    mine, theirs = logged_losses(run_dir / "metrics.jsonl"), logged_losses(ref / "metrics.jsonl")
    repeated = sorted({s for s, _ in mine if [t for t, _ in mine].count(s) > 1})
    if repeated:
        found.append(("metrics.jsonl logs a step twice", False, f"steps {repeated}"))
    mine_by_step, theirs_by_step = dict(mine), dict(theirs)
    if mine_by_step != theirs_by_step:
        differing = sorted(s for s in mine_by_step.keys() | theirs_by_step.keys()
                           if mine_by_step.get(s) != theirs_by_step.get(s))
        found.append(("metrics.jsonl losses differ from the uninterrupted run's", False,
                      f"steps {differing}"))
    left = leftovers(run_dir / "checkpoints", lambda n: re.fullmatch(r"step_\d{8,}", n) is not None)
    left += leftovers(run_dir, lambda n: not n.startswith("."))
    if left:
        found.append(("temporary files left behind", False, ", ".join(left)))
    return found


def without_timing(manifest: dict) -> dict:
    timing = ("seconds", "frames_per_second")
    summary = {k: v for k, v in manifest.get("summary", {}).items() if k not in timing}
    return {**manifest, "summary": summary}


def compare_prepared(out: Path, ref: Path) -> list[tuple[str, bool, str]]:
    """(problem, data lost, detail) for a finished preparation against the uninterrupted one."""
    found = []
    tars, ref_tars = (sorted(p.name for p in d.glob("clips-*.tar")) for d in (out, ref))
    if tars != ref_tars:
        found.append(("shards missing or extra", True, f"{len(tars)} shards, expected {len(ref_tars)}"))
    elif differ := [n for n in tars if not same_bytes(out / n, ref / n)]:
        found.append(("shard bytes differ from the uninterrupted run's", True, ", ".join(differ)))
    manifest = _json_or_none(out / "manifest.json")
    if manifest is None:
        found.append(("no manifest.json", True, ""))
    elif without_timing(manifest) != without_timing(_json_or_none(ref / "manifest.json") or {}):
        found.append(("manifest.json differs", True, ""))
    if report_entries(out) != report_entries(ref):
        found.append(("report.json differs", False, ""))
    expected = {p.name for p in ref.iterdir()}  # the shards, manifest, report and each partition's files
    if left := leftovers(out, lambda n: n in expected):
        found.append(("temporary files left behind", False, ", ".join(left)))
    return found


def report_entries(prepared: Path) -> list[dict]:
    """report.json's line per video, without its timing."""
    videos = (_json_or_none(prepared / "report.json") or {}).get("videos", [])
    return [{k: v for k, v in e.items() if k != "seconds"} for e in videos]


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- the campaign's shared state

@dataclass(frozen=True)
class Plan:
    train_kills: int
    signals: tuple[int, ...]
    checkpoint_points: int | None  # None: every recorded call
    torn_writes: int | None  # None: every safetensors file
    prepare_kills: int
    corruption_every: int  # run every n-th corruption
    fuzz_cases: int
    hostile_every: int  # run every n-th hostile file
    prepare_full_disk: bool
    pairs: int
    catch: int


FULL = Plan(train_kills=6, signals=(signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT),
            checkpoint_points=None, torn_writes=None, prepare_kills=5, corruption_every=1, fuzz_cases=40,
            hostile_every=1, prepare_full_disk=True, pairs=10, catch=2)
QUICK = Plan(train_kills=1, signals=(signal.SIGTERM,), checkpoint_points=3, torn_writes=1, prepare_kills=1,
             corruption_every=2, fuzz_cases=10, hostile_every=3, prepare_full_disk=False, pairs=4, catch=1)


@dataclass
class Campaign:
    work: Path
    seed: int
    plan: Plan
    raters: int
    fixtures: dict  # make_fixtures()
    ref_run: Path | None = None
    ref_run_seconds: float = 0.0
    ref_run_startup: float = 0.0  # seconds before its config.json appeared: imports, building the networks
    ref_run_problem: str | None = None
    ref_prepared: Path | None = None
    ref_prepare_seconds: float = 0.0
    ref_prepare_problem: str | None = None

    def rng(self, purpose: str) -> random.Random:
        """A random source per purpose: the same draws whatever else runs, or in what order."""
        return random.Random(f"{self.seed}/{purpose}")

    def folder(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def videos(self) -> Path:
        return Path(self.fixtures["videos"])

    def prepare_args(self, out: Path) -> list[str]:
        return ["prepare", *[str(self.videos / v) for v in PREPARE_VIDEOS], "--out", str(out), *PREPARE_ARGS]


def make_references(c: Campaign) -> None:
    """The uninterrupted runs every kill is compared with (in parallel: one core each)."""
    def train_ref():
        c.ref_run = c.work / "reference-run"
        child = Child(videogan(*train_args(c.ref_run)))
        while child.running() and not (c.ref_run / "config.json").exists():
            time.sleep(0.05)
        c.ref_run_startup = round(time.monotonic() - child.started, 2)
        o = child.wait(300)
        c.ref_run_seconds = o.seconds
        if o.returncode != 0 or not has_checkpoint(c.ref_run):
            c.ref_run_problem = f"the reference run failed (exit {o.returncode}: {tail(o.stderr, 1)})"

    def prepare_ref():
        missing = [v for v in PREPARE_VIDEOS if not (c.videos / v).is_file()]
        if missing:
            c.ref_prepare_problem = f"sample videos not found in {c.videos} (set VIDEOGAN_SAMPLE_VIDEOS)"
            return
        c.ref_prepared = c.work / "reference-prepared"
        o = run(videogan(*c.prepare_args(c.ref_prepared)))
        c.ref_prepare_seconds = o.seconds
        if o.returncode != 0:
            c.ref_prepare_problem = f"the reference prepare failed (exit {o.returncode}: {tail(o.stderr, 1)})"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(train_ref), pool.submit(prepare_ref)]:
            f.result()


def skipped(category: str, reason: str) -> list[Try]:
    return [Try(category, "all", skipped=reason)]


Job = Callable[[], list[Try]]


# ----------------------------------------------------------------------------- train: SIGKILL, SIGTERM

def finish_and_compare(c: Campaign, t: Try, run_dir: Path) -> None:
    t.judge(run(videogan(*recovery_args(run_dir))), "resume")
    for text, lost, detail in compare_run(run_dir, c.ref_run):
        t.problem(text, lost, detail)


def train_kill_jobs(c: Campaign) -> list[Job]:
    category = "SIGKILL of train"
    if c.ref_run_problem:
        return [lambda: skipped(category, c.ref_run_problem)]
    rng = c.rng("train-kill")
    training = c.ref_run_seconds - c.ref_run_startup
    times = [round(rng.uniform(0, training), 2) for _ in range(c.plan.train_kills)]

    def job(i: int, at: float) -> list[Try]:
        t = Try(category, f"kill {at} s into training")
        run_dir = c.work / f"train-kill-{i}"
        started = lambda: (run_dir / "config.json").exists()  # noqa: E731
        o = t.judge(run(videogan(*train_args(run_dir)), signal_at=at, once=started), "killed run", exits=None)
        t.details["killed"] = o.sent_signal is not None
        finish_and_compare(c, t, run_dir)
        return [t]

    return [functools.partial(job, i, at) for i, at in enumerate(times)]


def checkpointed_progress(run_dir: Path) -> tuple[int, int]:
    """(the last step logged, the step of the newest complete checkpoint)."""
    logged = max((s for s, _ in logged_losses(run_dir / "metrics.jsonl")), default=0)
    complete = (run_dir / "checkpoints").glob("step_*/checkpoint.json")
    steps = [int(p.parent.name.split("_")[1]) for p in complete]
    return logged, max(steps, default=0)


def train_signal_jobs(c: Campaign) -> list[Job]:
    category = "SIGTERM / SIGINT of train"
    if c.ref_run_problem:
        return [lambda: skipped(category, c.ref_run_problem)]
    rng = c.rng("train-signal")
    plan = [(sig, round(rng.uniform(0, 1.5), 2)) for sig in c.plan.signals]

    def job(i: int, sig: int, at: float) -> list[Try]:
        name = signal.Signals(sig).name
        t = Try(category, f"{name} {at} s after the first logged step")
        run_dir = c.work / f"train-signal-{i}"
        o = t.judge(run(videogan(*train_args(run_dir)), signal_at=at, sig=sig, group=sig == signal.SIGINT,
                        once=lambda: (run_dir / "metrics.jsonl").exists()), "interrupted run", exits=None)
        t.details["signalled"] = o.sent_signal is not None
        if o.returncode == -sig:
            t.problem(f"{name} killed it (no clean exit)")
        logged, saved = checkpointed_progress(run_dir)
        if logged > saved and o.returncode != 0:
            t.problem("stopped without checkpointing its progress",
                      detail=f"logged step {logged}, checkpoint {saved}")
        finish_and_compare(c, t, run_dir)
        return [t]

    return [functools.partial(job, i, sig, at) for i, (sig, at) in enumerate(plan)]


# ----------------------------------------------------------------------------- kills in a checkpoint write

def masked(name: str) -> str:
    """A file name with tempfile's random part replaced by *, so that calls compare across runs."""
    return re.sub(r"(?<=\.)[a-z0-9_]{8}(?=\.|$)", "*", Path(os.fsdecode(name)).name)


def _describe(call: str, args: tuple) -> str:
    """`call` with the names of the files it touches: fsync's descriptor is looked up in /proc."""
    names = []
    for a in args[:2]:
        if isinstance(a, int) and call == "os.fsync":
            try:
                a = os.readlink(f"/proc/self/fd/{a}")
            except OSError:
                a = "?"
        if isinstance(a, (str, bytes, os.PathLike)):
            names.append(masked(a))
    return " ".join([call, " -> ".join(names)]).strip()


def inject_and_run(argv: list[str]) -> int:
    """`faults.py --kill-inside-checkpoint WRITE POINT EVENTS_FILE VIDEOGAN_ARGS...`: videogan's CLI, with the
    file-system calls of its WRITE-th checkpoint write (1-based) appended to EVENTS_FILE, one line each, and a
    SIGKILL of itself just before call POINT (0-based; "K/torn": during call K, a safetensors file left
    half-written; -1: never). The last call recorded is the write's return."""
    write, point, events_file, args = int(argv[0]), argv[1], Path(argv[2]), argv[3:]
    target, torn = int(point.split("/")[0]), point.endswith("/torn")
    from videogan import cli
    from videogan.training import checkpoint

    state = {"writes": 0, "inside": False, "events": 0}
    truncate = os.truncate  # before it is wrapped: tearing a file is not one of the write's own calls

    def event(name: str) -> bool:
        """Record one call of the target write; True where the process must die."""
        if not state["inside"]:
            return False
        index = state["events"]
        state["events"] += 1
        with open(events_file, "a") as f:
            f.write(name + "\n")
        return index == target

    def wrap(owner, attr: str, call: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:  # (checkpoint.save_file, should the module stop importing it by that name)
            return

        @functools.wraps(original)
        def wrapper(*a, **k):
            if event(_describe(call, a)):
                if torn and call == "save_file":
                    original(*a, **k)
                    path = Path(a[1] if len(a) > 1 else k["filename"])
                    truncate(path, path.stat().st_size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*a, **k)

        setattr(owner, attr, wrapper)

    for attr in ("replace", "rename", "fsync", "mkdir", "rmdir", "unlink", "remove", "truncate"):
        wrap(os, attr, f"os.{attr}")
    wrap(shutil, "rmtree", "shutil.rmtree")
    wrap(shutil, "move", "shutil.move")
    wrap(checkpoint, "save_file", "save_file")
    original_save = checkpoint.save_checkpoint

    @functools.wraps(original_save)
    def save_checkpoint(*a, **k):
        state["writes"] += 1
        state["inside"] = state["writes"] == write
        try:
            result = original_save(*a, **k)
        except BaseException:
            state["inside"] = False
            raise
        if event("(the write returned)"):
            os.kill(os.getpid(), signal.SIGKILL)
        state["inside"] = False
        return result

    checkpoint.save_checkpoint = save_checkpoint
    return cli.main(args)


def inject_command(run_dir: Path, point: str, events_file: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), INJECT_FLAG, str(TARGET_WRITE), point,
            str(events_file), *train_args(run_dir)]


def kill_points(events: list[str], plan: Plan) -> list[tuple[str, str]]:
    """(POINT, label) for inject_and_run: before each recorded call that changes what is on disk (or
    `plan.checkpoint_points` of them, spread evenly; fsync only matters on a power cut, which a SIGKILL is
    not), and during each safetensors file (or `plan.torn_writes` of them)."""
    before = [i for i, e in enumerate(events) if not e.startswith("os.fsync")]
    if plan.checkpoint_points is not None and len(before) > plan.checkpoint_points:
        n = plan.checkpoint_points
        before = [before[round(i * (len(before) - 1) / max(1, n - 1))] for i in range(n)]
    torn = [i for i, e in enumerate(events) if e.startswith("save_file")]
    if plan.torn_writes is not None:
        torn = torn[: plan.torn_writes]
    return ([(str(i), f"before {events[i]}") for i in before] +
            [(f"{i}/torn", f"half-way through {events[i]}") for i in torn])


def checkpoint_kill_jobs(c: Campaign) -> list[Job]:
    category = "kill inside a checkpoint write"
    if c.ref_run_problem:
        return [lambda: skipped(category, c.ref_run_problem)]
    folder = c.folder("checkpoint-kill")
    events_file = folder / "events.txt"
    discovery = Try(category, "no kill (the calls recorded)")
    run_dir = folder / "recorded"
    discovery.judge(run(inject_command(run_dir, "-1", events_file)), "recorded run")
    for text, lost, detail in compare_run(run_dir, c.ref_run):
        discovery.problem(text, lost, detail)
    events = events_file.read_text().splitlines() if events_file.is_file() else []
    discovery.details["calls"] = events
    if len(events) < 2:
        discovery.problem("no checkpoint write observed")
        return [lambda: [discovery]]

    def job(i: int, point: str, label: str) -> list[Try]:
        t = Try(category, label)
        run_dir = folder / f"kill-{i}"
        o = run(inject_command(run_dir, point, folder / f"events-{i}.txt"))
        if o.returncode == -signal.SIGKILL:
            o.sent_signal = signal.SIGKILL  # the injector's own, as planned
        t.details["killed"] = o.sent_signal is not None
        t.judge(o, "killed run", exits=None)
        finish_and_compare(c, t, run_dir)
        return [t]

    return [lambda: [discovery]] + [functools.partial(job, i, point, label)
                                    for i, (point, label) in enumerate(kill_points(events, c.plan))]


# ----------------------------------------------------------------------------- prepare: SIGKILL

def prepare_kill_jobs(c: Campaign) -> list[Job]:
    category = "SIGKILL of prepare"
    if c.ref_prepare_problem:
        return [lambda: skipped(category, c.ref_prepare_problem)]
    rng = c.rng("prepare-kill")
    times = [round(rng.uniform(0.5, c.ref_prepare_seconds), 2) for _ in range(c.plan.prepare_kills)]

    def job(i: int, at: float) -> list[Try]:
        t = Try(category, f"kill at {at} s")
        out = c.work / f"prepare-kill-{i}"
        t.judge(run(videogan(*c.prepare_args(out)), signal_at=at), "killed run", exits=None)
        t.judge(run(videogan(*c.prepare_args(out))), "run again")
        for text, lost, detail in compare_prepared(out, c.ref_prepared):
            t.problem(text, lost, detail)
        return [t]

    return [functools.partial(job, i, at) for i, at in enumerate(times)]


# ----------------------------------------------------------------------------- corrupt shards

def jpeg_payloads(shard: Path) -> list[tuple[int, int]]:
    """(offset, size) of each .jpg member's bytes inside a tar."""
    with tarfile.open(shard) as tar:
        return [(m.offset_data, m.size) for m in tar.getmembers() if m.name.endswith(".jpg")]


def damage(shard: Path, how: str) -> None:
    """Damage a shard in place: "truncate" (cut at 60%, inside a member), "flip" (invert 16 bytes in the
    middle of every JPEG: the tar stays valid), "eoi" (an end-of-image marker 40% into every JPEG), "empty"
    (zero bytes), "garbage" (random bytes, no tar at all)."""
    data = bytearray(shard.read_bytes()) if shard.exists() else bytearray()
    if how == "truncate":
        data = data[: int(len(data) * 0.6)]
    elif how in ("flip", "eoi"):
        for offset, size in jpeg_payloads(shard):
            if how == "flip":
                middle = offset + size // 2
                data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
            else:
                at = offset + int(size * 0.4)
                data[at : at + 2] = b"\xff\xd9"
    elif how == "empty":
        data = bytearray()
    elif how == "garbage":
        data = bytearray(random.Random(0).randbytes(20_000))
    else:
        raise ValueError(how)
    shard.write_bytes(bytes(data))


@dataclass(frozen=True)
class Corruption:
    name: str
    damaged: dict[str, str]  # shard name -> how (damage()); "*": every shard of the reference
    keep_good: bool  # the undamaged shards stay beside the damaged ones
    exit: int  # 0: trains on what is readable; 2: nothing readable, a one-line error


CORRUPTIONS = [
    Corruption("truncated tar", {"clips-p00000-000003.tar": "truncate"}, True, 0),
    Corruption("flipped JPEG bytes", {"clips-p00000-000003.tar": "flip"}, True, 0),
    Corruption("early end-of-image", {"clips-p00000-000003.tar": "eoi"}, True, 0),
    Corruption("zero-byte tar beside good ones", {"clips-p00000-000099.tar": "empty"}, True, 0),
    Corruption("a zero-byte tar alone", {"clips-p00000-000000.tar": "empty"}, False, 2),
    Corruption("garbage named .tar alone", {"clips-p00000-000000.tar": "garbage"}, False, 2),
    Corruption("every JPEG flipped", {"*": "flip"}, False, 2),
]


def corrupt_shard_jobs(c: Campaign) -> list[Job]:
    category = "corrupt shards"
    if c.ref_prepare_problem:
        return [lambda: skipped(category, c.ref_prepare_problem)]
    chosen = CORRUPTIONS[:: c.plan.corruption_every]

    def job(i: int, corruption: Corruption) -> list[Try]:
        t = Try(category, corruption.name)
        data = c.folder("corrupt", f"data-{i}")
        shards = sorted(c.ref_prepared.glob("clips-*.tar"))
        targets = corruption.damaged
        if "*" in targets:
            targets = {s.name: targets["*"] for s in shards}
        for s in shards:
            if corruption.keep_good or s.name in targets:
                shutil.copy(s, data / s.name)
        for name, how in targets.items():
            damage(data / name, how)
        run_dir = c.work / "corrupt" / f"run-{i}"
        train = videogan("train", "--preset", "tiny", "--data", str(data), "--out", str(run_dir),
                         "--steps", "2", "--batch-size", "4", "--quiet", "--set", "train.num_threads=1",
                         "--set", "data.workers=0", "--set", "train.sample_every=0")
        o = t.judge(run(train, timeout=180), "train", exits={corruption.exit})
        if not any(name in o.stderr for name in targets) and not (corruption.exit and str(data) in o.stderr):
            t.problem("damage passed unnoticed (no warning or error names it)")
        return [t]

    return [functools.partial(job, i, corruption) for i, corruption in enumerate(chosen)]


# ----------------------------------------------------------------------------- a full disk

class MountError(Exception):
    pass


class Tmpfs:
    """A tmpfs of `size_bytes` mounted at `path` for the duration of a with-block."""

    def __init__(self, path: Path, size_bytes: int):
        self.path, self.size = path, size_bytes

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise MountError((done.stderr.strip().splitlines() or [f"mount exit {done.returncode}"])[-1])
        return self.path

    def __exit__(self, *exc) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def full_disk_jobs(c: Campaign) -> list[Job]:
    category = "full disk (tmpfs)"

    def train_on_full_disk() -> list[Try]:
        if c.ref_run_problem:
            return skipped(category, c.ref_run_problem)
        t = Try(category, "train: room for one checkpoint and a half")
        checkpoint_bytes = folder_bytes(c.ref_run / "checkpoints")
        try:
            with Tmpfs(c.work / "tmpfs-train", int(checkpoint_bytes * 1.5)) as disk:
                run_dir = disk / "run"
                o = t.judge(run(videogan(*train_args(run_dir))), "run on the full disk", exits={2})
                if "space" not in o.stderr.lower():
                    t.problem("the error does not say the disk is full")
                for text, lost, detail in compare_left_on_disk(run_dir):
                    t.problem(text, lost, detail)
                if not has_checkpoint(run_dir):
                    t.problem("no complete checkpoint survived on the full disk", lost=True)
                    return [t]
                moved = c.work / "full-disk-train-moved"
                shutil.copytree(run_dir, moved)
        except MountError as e:
            return skipped(category, f"cannot mount a tmpfs here ({e})")
        finish_and_compare(c, t, moved)
        return [t]

    def prepare_on_full_disk() -> list[Try]:
        if c.ref_prepare_problem:
            return skipped(category, c.ref_prepare_problem)
        t = Try(category, "prepare: room for 40% of the shards")
        try:
            with Tmpfs(c.work / "tmpfs-prepare", int(folder_bytes(c.ref_prepared) * 0.4)) as disk:
                out = disk / "prepared"
                o = t.judge(run(videogan(*c.prepare_args(out))), "run on the full disk", exits={2})
                if "space" not in o.stderr.lower():
                    t.problem("the error does not say the disk is full")
                moved = c.work / "full-disk-prepare-moved"
                if out.is_dir():
                    shutil.copytree(out, moved)
        except MountError as e:
            return skipped(category, f"cannot mount a tmpfs here ({e})")
        t.judge(run(videogan(*c.prepare_args(moved))), "run again on a large disk")
        for text, lost, detail in compare_prepared(moved, c.ref_prepared):
            t.problem(text, lost, detail)
        return [t]

    def both() -> list[Try]:  # one after the other: two tmpfs mounts at once gain nothing
        return train_on_full_disk() + (prepare_on_full_disk() if c.plan.prepare_full_disk else [])

    return [both]


def compare_left_on_disk(run_dir: Path) -> list[tuple[str, bool, str]]:
    """What a failed write left on the full disk (before anything else runs): temporary files are problems."""
    left = leftovers(run_dir / "checkpoints", lambda n: re.fullmatch(r"step_\d{8,}", n) is not None)
    left += leftovers(run_dir, lambda n: not n.startswith("."))
    return [("temporary files left on the full disk", False, ", ".join(left))] if left else []


# ----------------------------------------------------------------------------- CLI and config fuzzing

BAD_INTS = ["0", "-1", "1.5", "nan", "1e9999", "", "x", "99999999999999999999"]
BAD_FLOATS = ["-1", "nan", "inf", "-inf", "1e309", "", "x"]
TEXTS = ["", " ", "-", "\u00e9\u6f22\u5b57", "a" * 4096, "%s%n", "../x", "$(echo pwned)"]
BAD_KEYS = ["model", "model.", ".size", "model.size.x", "nosuch.key", "train.nosuch", "", "model.size=="]


def config_defaults() -> dict[str, object]:
    """Every `section.field` that --set takes, with its default (whose type says what a wrong value is)."""
    from dataclasses import fields

    from videogan.config import Config

    cfg = Config()
    return {f"{section.name}.{f.name}": getattr(getattr(cfg, section.name), f.name)
            for section in fields(cfg) for f in fields(getattr(cfg, section.name))}


def fuzz_value(rng: random.Random, default: object) -> str:
    """A value for a config field: its default or a near one, or one of its type's hostile values."""
    if isinstance(default, bool):
        return rng.choice(["true", "false", "maybe", "2", ""])
    if isinstance(default, int):
        return rng.choice([str(default), str(default * 2 or 1), *BAD_INTS, "true"])
    if isinstance(default, float):
        return rng.choice([repr(default), repr(default / 2), "0", *BAD_FLOATS])
    return rng.choice([str(default), *TEXTS, "color,nope"])


def fuzz_argv(rng: random.Random, p: dict, defaults: dict[str, object], hostile: float = 0.15) -> list:
    """One random command line: options take a valid value, or with probability `hostile` a wrong one, so that
    a command usually gets past argument parsing with one or two faults in it. `p` names the files to aim at:
    run (a trained run), video, file (text), dir (empty), missing, image (text named .png), empty_image, bomb
    (a PNG header claiming 10^10 pixels), out (a fresh folder), non_utf8 (a bytes path). Valid step counts and
    sizes are small, so that a command that is right costs seconds."""
    pick = rng.choice

    def value(valid: list, wrong: list) -> object:
        return pick(wrong) if rng.random() < hostile else pick(valid)

    def opt(option: str, valid: list, wrong: list, chance: float = 0.5) -> list:
        return [option, value(valid, wrong)] if rng.random() < chance else []

    def flag(name: str, chance: float) -> list:
        return [name] if rng.random() < chance else []

    def sets(n: int) -> list:
        items = []
        for _ in range(rng.randint(0, n)):
            key = pick(BAD_KEYS) if rng.random() < 0.1 else pick(list(defaults))
            assignment = f"{key}={fuzz_value(rng, defaults.get(key, ''))}"
            items += ["--set", assignment if rng.random() < 0.95 else pick(TEXTS)]
        return items

    files = [p["missing"], p["file"], p["dir"], "/dev/null", p["image"], p["non_utf8"], ""]
    out = value([p["out"]], [p["file"], p["file"] + "/sub", p["run"], "", "/dev/null", p["non_utf8"]])
    inputs = value([p["video"]], files)
    models = (["two-stream", "one-stream", "conditional"], ["three-stream", ""])
    big = ["0", "-1", "x", "100000"]
    command = pick(["info", "train", "train", "train", "generate", "prepare", "import-t7", "study create",
                    "study report", "pretrained", "animate", "evaluate", "bench data", "nonsense"])
    if command == "info":
        argv = ["info", *opt("--preset", ["tiny", "paper"], ["huge", ""]), *opt("--model", *models), *sets(4)]
    elif command == "train":
        argv = ["train", "--preset", value(["tiny"], ["paper", "nope"]), "--out", out,
                "--steps", value(["1"], ["0", "-3", "x", "", "1.5"]),
                "--batch-size", value(["2", "4"], ["0", "-2", "x"]),
                *opt("--data", ["synthetic"], [inputs, "synthetic-actions", "http://127.0.0.1:9/x.tar"]),
                *opt("--device", ["cpu"], ["cuda", "cuda:7", "tpu", ""]), *opt("--model", *models),
                *opt("--seed", ["0", "7"], BAD_INTS), *opt("--eval-every", ["0"], BAD_INTS, 0.2),
                *flag("--resume", 0.2), "--quiet", "--set", "train.num_threads=1", "--set", "data.workers=0",
                "--set", "train.sample_every=0", *sets(4)]
    elif command == "generate":
        source = [value([p["run"]], [p["missing"], p["file"], p["dir"], "", p["non_utf8"]])]
        if rng.random() < 0.3:
            source = ["--pretrained", value(["synthetic", "pedestrians"], ["nope", "", "../synthetic"])]
        argv = ["generate", *source, "--out", out, *opt("--num", ["1", "2"], ["0", "-1", "x", "99999999999"]),
                *opt("--upscale", ["1", "2"], ["0", "-2", "100000"]), *opt("--fps", ["8"], BAD_INTS),
                *opt("--batchnorm", ["running", "batch"], ["none"]),
                *opt("--weights", ["ema", "live"], ["best"]), "--device", value(["cpu"], ["cuda", ""])]
    elif command == "prepare":
        second = [value([p["video"]], files)] if rng.random() < 0.3 else []
        argv = ["prepare", inputs, *second, "--out", out,
                "--size", value(["32"], ["3", *big]), "--frames", value(["16"], ["1", *big]),
                *opt("--stride", ["4"], BAD_INTS), *opt("--fps", ["10"], BAD_FLOATS),
                *opt("--min-motion", ["1"], BAD_FLOATS), *opt("--quality", ["85"], ["0", "101", "x"]),
                *opt("--clips-per-shard", ["2"], BAD_INTS), "--workers", value(["1"], ["0", "-1", "x"]),
                *opt("--features", ["sift", "orb"], ["surf"]),
                "--no-stabilize" if rng.random() < 0.8 else "--stabilize", "--quiet"]
    elif command == "import-t7":
        argv = ["import-t7", pick(files), "--out", out, *opt("--discriminator", files, files), "--quiet"]
    elif command == "study create":
        sources = (["synthetic", p["run"]], [p["missing"], p["file"], "", "synthetic-actions"])
        argv = ["study", "create", "--a", value(*sources), "--b", value(*sources), "--out", out,
                "--pairs", value(["1", "2"], ["0", "-1", "x"]), "--frames", value(["4"], ["0", "1", "x"]),
                "--size", value(["8"], ["0", "3", "7", "x"]),
                *opt("--catch", ["0", "1"], ["-1", "x", "1000"]),
                *opt("--upscale", ["2"], ["0", "3", "100000"]), *opt("--fps", ["8"], BAD_INTS),
                "--device", "cpu", "--quiet"]
    elif command == "study report":
        argv = ["study", "report", pick([p["missing"], p["file"], p["dir"], p["run"], ""]),
                *opt("--out", [out], [out]), *flag("--exclude-failed-catch", 0.3)]
    elif command == "pretrained":
        name = value(["synthetic", "pedestrians"], ["nope", "", "../x", "a" * 4096])
        argv = ["pretrained", *([name] if rng.random() < 0.7 else []), *flag("--json", 0.5)]
    elif command == "animate":
        model = [p["run"]]
        if rng.random() < 0.8:
            model = ["--pretrained", value(["synthetic-animate"], ["synthetic", "nope"])]
        images = [p["image"], p["empty_image"], p["bomb"], p["missing"], p["dir"], p["non_utf8"], p["video"]]
        argv = ["animate", *model, *[pick(images) for _ in range(rng.randint(0, 2))], "--out", out,
                *opt("--samples", ["1", "2"], ["-1", *big]), *opt("--upscale", ["1"], ["0", "100000"]),
                "--device", "cpu", "--quiet"]
    elif command == "evaluate":
        argv = ["evaluate", "--real", value(["synthetic"], [p["missing"], p["file"], p["dir"], ""]),
                "--fake", value(["pretrained:synthetic", p["run"]],
                                [p["missing"], "pretrained:nope", p["file"]]),
                "--num", value(["2"], ["0", "-1", "x"]), "--frames", value(["16"], ["0", "x", "4"]),
                *opt("--size", ["32"], ["0", "x"]), "--device", "cpu", "--no-cache", "--quiet", "--out", out]
    elif command == "bench data":
        argv = ["bench", "data", pick([p["missing"], p["file"], p["dir"], "", p["video"]]),
                *opt("--batches", ["1"], ["0", "x"]), *opt("--workers", ["0"], ["-1", "x"]),
                *opt("--batch-size", ["1"], ["0", "x"])]
    else:
        argv = pick([[], ["--version"], ["nonsense"], ["train", "--bogus"], [pick(TEXTS)], ["study"],
                     ["bench"]])
    if argv and rng.random() < 0.1:  # a last option left without its value, or an option no command has
        argv = argv[:-1] if rng.random() < 0.5 else [*argv, "--no-such-option"]
    return argv


def fuzz_files(folder: Path, c: Campaign) -> dict:
    """The files fuzzed commands aim at (shared, read-only); `run` and `out` are per case (cli_fuzz_jobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.txt").write_text("hello\n")
    (folder / "not-an-image.png").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    # A PNG signature and a header claiming 100000 x 100000 pixels, and nothing else: a decompression bomb.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
    (folder / "empty-dir").mkdir(exist_ok=True)
    video = c.videos / "tree.avi"
    return {"video": str(video) if video.is_file() else str(folder / "missing.avi"),
            "file": str(folder / "text.txt"), "image": str(folder / "not-an-image.png"),
            "empty_image": str(folder / "empty.jpg"), "bomb": str(folder / "bomb.png"),
            "dir": str(folder / "empty-dir"), "missing": str(folder / "no-such-file")}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def copy_run(ref: Path, to: Path) -> Path:
    """A run folder with the reference's config.json and final checkpoint (what generate and --resume use)."""
    final = f"step_{STEPS:08d}"
    shutil.copytree(ref / "checkpoints" / final, to / "checkpoints" / final)
    shutil.copy(ref / "config.json", to / "config.json")
    return to


def cli_fuzz_jobs(c: Campaign) -> list[Job]:
    category = "CLI and config fuzzing"
    folder = c.folder("fuzz")
    shared = fuzz_files(folder, c)
    defaults = c.fixtures["config_defaults"]
    rng = c.rng("cli-fuzz")
    cases = []
    for i in range(c.plan.fuzz_cases):
        case = folder / f"case-{i:03d}"
        paths = {**shared, "run": str(case / "run"), "out": str(case / "out"),
                 "non_utf8": os.fsencode(case) + b"/\xff\xfe-out"}
        cases.append((case, paths, fuzz_argv(rng, paths, defaults)))

    def job(case: Path, paths: dict, argv: list) -> list[Try]:
        t = Try(category, shown([os.fsdecode(a) for a in argv])[:200])
        case.mkdir(parents=True, exist_ok=True)
        if paths["run"] in argv and c.ref_run is not None and not c.ref_run_problem:
            copy_run(c.ref_run, Path(paths["run"]))
        outcome = run(videogan(*argv), timeout=120, cwd=case, memory_limit_mb=ADDRESS_SPACE_MB)
        t.judge(outcome, "command", exits={0, 2})
        return [t]

    return [functools.partial(job, *case) for case in cases]


# ----------------------------------------------------------------------------- hostile files

def safetensors_claiming(shape: list[int], dtype: str = "F32", data: bytes = bytes(16)) -> bytes:
    """A safetensors file whose header describes one tensor of `shape` over far fewer bytes than it needs."""
    size = math.prod(shape) * {"F32": 4, "F64": 8, "U8": 1}[dtype]
    header = json.dumps({"weight": {"dtype": dtype, "shape": shape, "data_offsets": [0, size]}}).encode()
    return struct.pack("<Q", len(header)) + header + data


def evil_pickle(marker: Path) -> bytes:
    """A protocol-0 pickle that, if ever unpickled, runs `touch MARKER` (os.system by GLOBAL and REDUCE)."""
    return f"cos\nsystem\n(S{json.dumps('touch ' + str(marker))}\ntR.".encode()


def torch_zip(payload: bytes) -> bytes:
    """The layout torch.save writes (a zip holding archive/data.pkl), around `payload`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    return buffer.getvalue()


def nested_json(depth: int) -> str:
    return '{"step": ' + "[" * depth + "]" * depth + "}"


def t7_nested_tables(depth: int) -> bytes:
    """A Torch7 file of `depth` tables, each the only value of the one before (torch7 File.lua's format: type
    3, reference index, one pair, the key 1.0, the value)."""
    level = struct.pack("<i", 1) + struct.pack("<d", 1.0)
    return b"".join(struct.pack("<iii", 3, i + 1, 1) + level for i in range(depth)) + struct.pack("<i", 0)


def hostile_t7_files(folder: Path) -> list[tuple[str, Path]] | str:
    """(name, file) of hostile .t7 files, built on main.lua's generator as the tests write it
    (tests/interop/test_t7.py); a reason where those helpers cannot be imported.
    Runs in the fixtures process."""
    sys.path.insert(0, str(REPO / "tests" / "interop"))
    try:
        import numpy as np
        import t7_writer as w
        from test_t7 import original_net
    except Exception as e:  # noqa: BLE001 - tests/ may be absent or mid-change: say so instead of stopping
        return ("the Torch7 fixture writer (tests/interop/t7_writer.py, tests/interop/test_t7.py) "
                f"cannot be imported: {e}")

    def net():
        return original_net(width=16, frames=16, size=32)

    files = []

    def save(name: str, data: bytes) -> None:
        path = folder / f"{len(files):02d}-iter1000_net.t7"
        path.write_bytes(data)
        files.append((f".t7: {name}", path))

    strings = b"".join(struct.pack("<i", len(s)) + s for s in (b"V 1", b"torch.FloatStorage"))
    storage = struct.pack("<ii", 4, 1) + strings + struct.pack("<q", 1 << 50) + bytes(64)
    save("a storage claiming 2^50 floats", storage)

    wide = net()
    conv = wide["modules"][0]["modules"][0]["modules"][1]  # the video stream's first transposed convolution
    channels = 1 << 20
    conv.fields["nOutputPlane"] = channels
    conv.fields["weight"] = w.Tensor(w.Storage(np.zeros(1, np.float32)), (100, channels, 2, 4, 4), (0,) * 5)
    save("a weight of 2^20 channels, all one zero-strided float", w.dumps(wide))

    looped = net()
    looped["modules"][2]["modules"][0]["modules"].append(looped)  # the composition contains the whole net
    save("a module that contains itself", w.dumps(looped))

    save("100000 nested tables", t7_nested_tables(100_000))
    save("a table claiming 2^31-1 entries", struct.pack("<iii", 3, 1, 2**31 - 1) + bytes(32))
    save("a string claiming 2^31-1 bytes", struct.pack("<ii", 2, 2**31 - 1) + b"abc")

    nan = net()
    nan["modules"][0]["modules"][0]["modules"][1].fields["kT"] = float("nan")
    save("a NaN kernel size", w.dumps(nan))
    return files


CODE_RAN = "code-ran"  # the file a hostile pickle creates in its case's folder, if it is ever unpickled


def make_fixtures(folder: Path) -> dict:
    """What needs torch and the package, made in a process of its own (`faults.py --make-fixtures DIR`): Linux
    counts a child's peak memory from the resident size of the process that started it, so the harness stays
    small (~30 MB) and imports neither. The machine's name, the sample videos' folder, the config's defaults
    and the hostile .t7 files (written into `folder`)."""
    from sample_data import sample_videos_dir

    from videogan.bench import cpu_name

    folder.mkdir(parents=True, exist_ok=True)
    t7 = hostile_t7_files(folder)
    return {"cpu": cpu_name(), "videos": str(sample_videos_dir()), "config_defaults": config_defaults(),
            "t7": [] if isinstance(t7, str) else [[name, str(path)] for name, path in t7],
            "t7_missing": t7 if isinstance(t7, str) else None}


Build = Callable[[Path], list]  # writes a hostile file into a case's folder; returns the command to read it


def hostile_cases(c: Campaign) -> tuple[list[tuple[str, Build]], str | None]:
    """(name, build) per hostile file (in a copy of the reference run, or alone), and why the .t7 files are
    missing, if they are."""
    cases: list[tuple[str, Build]] = []
    final = f"step_{STEPS:08d}"
    generate = "generate"

    def in_run(name: str, file: str, content: Callable[[Path], bytes] | bytes | str, command: str = generate):
        def build(folder: Path) -> list:
            run_dir = copy_run(c.ref_run, folder / "run")
            data = content(folder) if callable(content) else content
            target = run_dir / file if file == "config.json" else run_dir / "checkpoints" / final / file
            target.write_bytes(data.encode() if isinstance(data, str) else data)
            if command == generate:
                return ["generate", str(run_dir), "--num", "1", "--out", str(folder / "out"),
                        "--device", "cpu"]
            return ["train", "--out", str(run_dir), "--resume", "--steps", str(STEPS + 1), "--quiet"]
        cases.append((name, build))

    meta = json.loads((c.ref_run / "checkpoints" / final / "checkpoint.json").read_text())
    config = json.loads((c.ref_run / "config.json").read_text())

    def with_meta(**changes) -> str:
        return json.dumps({**meta, **changes})

    def with_model(**changes) -> str:
        return with_meta(config={**meta["config"], "model": {**meta["config"]["model"], **changes}})

    def pickled(folder: Path) -> bytes:
        return evil_pickle(folder / CODE_RAN)

    weights, checkpoint_json, train = "generator.safetensors", "checkpoint.json", "train"
    in_run("safetensors: a header claiming a 4 TiB tensor", weights, safetensors_claiming([1 << 40]))
    in_run("safetensors: a header length of 2^62 bytes", "generator_ema.safetensors",
           struct.pack("<Q", 1 << 62) + b"{}")
    in_run("safetensors: offsets past the end", weights, safetensors_claiming([1 << 20], data=bytes(8)))
    in_run("a pickle renamed .safetensors", weights, pickled)
    in_run("torch.save's zip renamed .safetensors", "training_state.safetensors",
           lambda folder: torch_zip(pickled(folder)), command=train)
    in_run("checkpoint.json: step is a string", checkpoint_json, with_meta(step="ten"))
    in_run("checkpoint.json: step is 1e400", checkpoint_json,
           with_meta(step=0).replace('"step": 0', '"step": 1e400'))
    in_run("checkpoint.json: a list", checkpoint_json, "[1, 2, 3]")
    in_run("checkpoint.json: config is a string", checkpoint_json, with_meta(config="tiny"))
    in_run("checkpoint.json: a negative clip size", checkpoint_json, with_model(size=-64))
    in_run("checkpoint.json: a width of 10^12", checkpoint_json, with_model(g_width=10**12))
    in_run("checkpoint.json: optimizers is a string", checkpoint_json, with_meta(optimizers="adam"), train)
    in_run("checkpoint.json: nested 100000 deep", checkpoint_json, nested_json(100_000))
    in_run("checkpoint.json: not UTF-8", checkpoint_json, b"\xff\xfe" + json.dumps(meta).encode())
    in_run("checkpoint.json: format_version is a string", checkpoint_json, with_meta(format_version="1"))
    in_run("config.json: train.steps is a word", "config.json",
           json.dumps({**config, "train": {**config["train"], "steps": "many"}}), train)
    text = json.dumps(config)
    in_run("config.json: cut in half", "config.json", text[: len(text) // 2], train)

    for name, path in c.fixtures["t7"]:
        cases.append((name, lambda folder, path=path: ["import-t7", path, "--out", str(folder / "run"),
                                                       "--quiet"]))
    return cases, c.fixtures["t7_missing"]


def hostile_jobs(c: Campaign) -> list[Job]:
    category = "hostile files"
    if c.ref_run_problem:
        return [lambda: skipped(category, c.ref_run_problem)]
    cases, t7_missing = hostile_cases(c)

    def job(i: int, name: str, build: Build) -> list[Try]:
        t = Try(category, name)
        folder = c.folder("hostile", f"case-{i:02d}")
        argv = build(folder)
        t.judge(run(videogan(*argv), timeout=120, memory_limit_mb=ADDRESS_SPACE_MB), "command", exits={2})
        if t.peak_mb > MEMORY_GOAL_MB:
            t.problem(f"peak memory over {MEMORY_GOAL_MB} MB")
        if (folder / CODE_RAN).exists():
            t.problem("code from the file was executed")
        return [t]

    chosen = cases[:: c.plan.hostile_every]
    jobs = [functools.partial(job, i, name, build) for i, (name, build) in enumerate(chosen)]
    if t7_missing:
        jobs.append(lambda: [Try(category, ".t7 files", skipped=t7_missing)])
    return jobs


# ----------------------------------------------------------------------------- the study server under load

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def raw_request(port: int, payload: bytes, timeout: float = 10.0,
                close_after_send: bool = False) -> tuple[int | None, str | None]:
    """(HTTP status or None, error or None) for bytes sent as they are on a new connection."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
            s.sendall(payload)
            if close_after_send:
                return None, None
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        return None, "no response"
    except ConnectionResetError:
        return None, "connection reset"
    except OSError as e:
        return None, type(e).__name__
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(match.group(1)), None) if match else (None, "closed without a response")


def malformed_requests(pair: str, clip: str) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, whether a response is due) of requests no browser sends."""
    def request(line: str, headers: str = "", body: bytes = b"") -> bytes:
        return f"{line} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode() + body

    def post(body: bytes, content_type: str = "application/json", length: int | str | None = None) -> bytes:
        length = len(body) if length is None else length
        headers = f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
        return request("POST /api/answer", headers, body)

    def answer(**fields) -> bytes:
        body = {"rater": "intruder", "pair": pair, "choice": "left", "ms": 100, **fields}
        return post(json.dumps(body).encode())

    many_headers = "".join(f"X-{i}: y\r\n" for i in range(200))
    return [
        ("garbage request line", b"\x00\xff\xfe GARBAGE\r\n\r\n", True),
        ("a request line of 70 KB", request("GET /" + "a" * 70_000), True),
        ("200 headers", request("GET /", many_headers), True),
        *[(f"{m} /api/answer", request(f"{m} /api/answer", "Content-Length: 0\r\n"), True)
          for m in ("PUT", "DELETE", "PATCH", "OPTIONS")],
        ("POST to the page", request("POST /", "Content-Length: 0\r\n"), True),
        ("body not JSON", post(b"{not json"), True),
        ("JSON nested 1020 deep", post(b"[" * 1020 + b"]" * 1020), True),
        ("body over 2 KB", post(b" " * 5000), True),
        ("Content-Length of 10^12, no body", post(b"", length=10**12), True),
        ("Content-Length -5", post(b"{}", length=-5), True),
        ("Content-Length not a number", post(b"{}", length="12abc"), True),
        ("no Content-Length", request("POST /api/answer", "Content-Type: application/json\r\n"), True),
        ("Content-Type text/plain", post(b"{}", content_type="text/plain"), True),
        ("unknown pair", answer(pair="no-such-pair"), True),
        ("rater id with markup", answer(rater="<script>"), True),
        ("ms is NaN", answer(ms=float("nan")), True),
        ("choice null", answer(choice=None), True),
        ("body not UTF-8", post(b'{"rater": "\xff\xfe", "pair": "1", "choice": "left", "ms": 1}'), True),
        ("rater id of NUL", request("GET /api/next?rater=%00"), True),
        ("path traversal", request("GET /clips/../study.json"), True),
        ("encoded path traversal", request("GET /%2e%2e/study.json"), True),
        ("range past the end", request(f"GET /clips/{clip}.mp4", "Range: bytes=99999999-\r\n"), True),
        ("range not a number", request(f"GET /clips/{clip}.mp4", "Range: bytes=abc-def\r\n"), True),
        ("headers cut short, then closed", b"POST /api/answer HTTP/1.1\r\nContent-Length: 50\r\n", False),
        ("body cut short, then closed", post(b'{"rater"', length=100), False),
    ]


IDLE_REQUESTS = [  # (name, what an idle connection sends before it falls silent)
    ("idle after part of the headers", b"GET / HTTP/1.1\r\nHost: x\r\n"),
    ("idle after part of a body",
     b'POST /api/answer HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"rater"'),
]
STUDY_MALFORMED = "study server: malformed requests"
STUDY_PROCESS = "study server: kill, restart, stop"


class StudyLoad:
    """Raters answering a study at once through a server that is SIGKILLed half-way and started again, with
    malformed requests and idle connections beside them."""

    def __init__(self, c: Campaign, study: Path, total: int):
        self.c, self.study, self.total = c, study, total
        self.port = free_port()
        self.lock = threading.Lock()
        self.acked: dict[str, list[tuple[str, str]]] = {f"rater{i:02d}": [] for i in range(c.raters)}
        self.finished: set[str] = set()
        self.errors: list[tuple[float, str, str]] = []  # (when, rater, what)
        self.outages: list[list[float]] = []  # [from, to]: the server down on purpose
        self.statuses: dict[str, Counter] = {r: Counter() for r in self.acked}
        self.server: Child | None = None
        self.peak_mb = 0.0
        self.deadline = time.monotonic() + 240

    def start_server(self) -> bool:
        serve = videogan("study", "serve", str(self.study), "--port", str(self.port))
        self.server = Child(serve, cwd=self.c.work)
        deadline = time.monotonic() + 60
        page = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        while time.monotonic() < deadline and self.server.running():
            if raw_request(self.port, page, timeout=2)[0] == 200:
                return True
            time.sleep(0.1)
        return False

    def stop_server(self, t: Try, sig: int, step: str, exits: set[int] | None) -> Outcome:
        self.server.send(sig)
        outcome = t.judge(self.server.wait(60), step, exits)
        self.peak_mb = max(self.peak_mb, outcome.peak_mb)
        return outcome

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, None
        finally:
            conn.close()

    def rater(self, name: str, barrier: threading.Barrier) -> None:
        """Answer every pair as a browser does (the pair shown, then the answer); retry a lost connection."""
        rng = self.c.rng(f"study/{name}")
        barrier.wait()
        while time.monotonic() < self.deadline:
            try:
                status, reply = self.request("GET", f"/api/next?rater={name}")
                self.statuses[name][status] += 1
                if status != 200 or reply is None:
                    time.sleep(0.2)
                    continue
                if reply["pair"] is None:
                    self.finished.add(name)
                    return
                pair, choice = reply["pair"]["id"], rng.choice(["left", "right"])
                answer = {"rater": name, "pair": pair, "choice": choice, "ms": rng.randint(300, 5000)}
                status, _ = self.request("POST", "/api/answer", answer)
                self.statuses[name][status] += 1
                if status == 200:
                    with self.lock:
                        self.acked[name].append((pair, choice))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append((time.monotonic(), name, type(e).__name__))
                time.sleep(0.2)

    def acked_count(self) -> int:
        with self.lock:
            return sum(len(a) for a in self.acked.values())

    def kill_and_restart(self, t: Try, report_try: Try) -> None:
        """Once half the answers are in: SIGKILL the server, run `study report` on what it left, start it
        again."""
        while self.acked_count() < self.c.raters * self.total // 2 and time.monotonic() < self.deadline:
            time.sleep(0.05)
        outage = [time.monotonic(), math.inf]
        self.outages.append(outage)
        self.stop_server(t, signal.SIGKILL, "server (SIGKILL)", None)
        before = self.acked_count()
        report_try.details["hot_journal"] = (self.study / "answers.sqlite-journal").exists()
        report = videogan("study", "report", str(self.study), "--out", str(self.c.work / "report-after-kill"))
        o = report_try.judge(run(report), "study report")
        reported = (_json_line(o.stdout) or {}).get("answers")
        if o.returncode == 0 and (reported is None or reported < before):
            report_try.problem("acknowledged answers missing from the report", lost=True,
                               detail=f"{reported} < {before}")
        if not self.start_server():
            t.problem("the server did not start again")
        outage[1] = time.monotonic() + 1.0

    def malformed(self) -> list[Try]:
        """Each malformed request once; a traceback in the server's log counts against the request before."""
        try:
            pair = self.request("GET", "/api/next?rater=intruder")[1]["pair"]
        except (OSError, http.client.HTTPException, TypeError, KeyError):
            pair = None
        pair = pair or {"id": "1", "left": "x"}
        tries = []
        for name, payload, due in malformed_requests(pair["id"], pair["left"]):
            t = Try(STUDY_MALFORMED, name)
            log_before = self.server.stderr_so_far().count("Traceback")
            status, error = raw_request(self.port, payload, close_after_send=not due)
            time.sleep(0.1)
            t.details.update(status=status, error=error)
            if self.server.stderr_so_far().count("Traceback") > log_before:
                t.not_one_line = True
                t.problem("a traceback in the server's log")
            if due and status is None:
                t.problem(f"no status ({error})")
            elif status is not None and status >= 500:
                t.problem(f"answered {status}")
            tries.append(t)
        return tries

    def open_idle(self) -> list[tuple[str, socket.socket, float]]:
        idle = []
        for name, payload in IDLE_REQUESTS * 4:
            try:
                s = socket.create_connection((LOCALHOST, self.port), timeout=5)
                s.sendall(payload)
                idle.append((name, s, time.monotonic()))
            except OSError as e:
                self.errors.append((time.monotonic(), "idle", type(e).__name__))
        return idle

    def check_idle(self, idle: list[tuple[str, socket.socket, float]]) -> list[Try]:
        """Whether the server closed (or answered) each idle connection within IDLE_LIMIT_S."""
        tries = []
        for name, s, opened in idle:
            time.sleep(max(0.0, opened + IDLE_LIMIT_S + 1 - time.monotonic()))
            t = Try(STUDY_MALFORMED, name)
            s.settimeout(0.2)
            try:
                data = s.recv(4096)
                t.details["closed_with"] = data[:40].decode(errors="replace") or "EOF"
            except TimeoutError:
                t.problem(f"idle connection still open after {IDLE_LIMIT_S} s")
            except OSError as e:
                t.details["closed_with"] = type(e).__name__
            finally:
                s.close()
            tries.append(t)
        return tries

    def unexpected_errors(self, rater: str) -> list[str]:
        """Connection errors of a rater outside the outage the kill caused."""
        return [what for when, who, what in self.errors
                if who == rater and not any(start <= when <= end for start, end in self.outages)]

    def rater_try(self, name: str, stored: dict[str, set[tuple[str, str]]]) -> Try:
        t = Try(f"study server: {self.c.raters} raters at once, server killed", name)
        t.details["statuses"] = dict(self.statuses[name])
        if name not in self.finished:
            t.problem("did not get through every pair")
        missing = [a for a in self.acked[name] if a not in stored.get(name, set())]
        if missing:
            t.problem("acknowledged answers missing from the database", lost=True, detail=f"{len(missing)}")
        if self.statuses[name].keys() - {200, 409}:  # 409: an answer sent again after its reply was lost
            t.problem("a 4xx or 5xx to a well-formed request", detail=str(dict(self.statuses[name])))
        for what in sorted(set(self.unexpected_errors(name))):
            t.problem(f"{what} outside the server's outage")
        return t

    def run(self) -> list[Try]:
        process = Try(STUDY_PROCESS, "server")
        report_after_kill = Try(STUDY_PROCESS, "study report after the kill")
        if not self.start_server():
            self.server.send(signal.SIGKILL, group=True)
            why = tail(self.server.wait(10).stderr, 1)
            return skipped(STUDY_PROCESS, f"the server did not start ({why})")
        barrier = threading.Barrier(self.c.raters)
        raters = [threading.Thread(target=self.rater, args=(name, barrier), daemon=True)
                  for name in self.acked]
        for thread in raters:
            thread.start()
        self.kill_and_restart(process, report_after_kill)
        idle = self.open_idle()  # after the restart: the kill would close them, not the server's timeout
        malformed = self.malformed()
        for thread in raters:
            thread.join(max(0.0, self.deadline - time.monotonic()))
        malformed += self.check_idle(idle)
        self.stop_server(process, signal.SIGINT, "server (Ctrl-C)", {0, 130})

        stored = self.stored_answers(process)
        tries = [self.rater_try(name, stored) for name in self.acked]
        tries += malformed + [process, report_after_kill]
        for t in tries:
            t.peak_mb = max(t.peak_mb, self.peak_mb)
        return tries

    def stored_answers(self, t: Try) -> dict[str, set[tuple[str, str]]]:
        try:
            found: dict[str, set[tuple[str, str]]] = {}
            for rater, pair, choice, *_ in _rows(self.study / "answers.sqlite"):
                found.setdefault(rater, set()).add((pair, choice))
            return found
        except sqlite3.Error as e:
            t.problem("the answers database cannot be read", lost=True, detail=str(e))
            return {}


def _json_line(text: str) -> dict | None:
    """The last line of `text` that is JSON (what a command printed as its result)."""
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _rows(path: Path) -> list:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM answers").fetchall()
    finally:
        db.close()


HOT_JOURNAL = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO answers VALUES ('hot-journal', 'x', 'left', 'a', 1, '2000-01-01T00:00:00Z')")
os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction: the rollback journal stays behind, hot
"""


def hot_journal_try(c: Campaign, study: Path) -> Try:
    """`study report` on a database whose writer died mid-transaction (a hot rollback journal beside it)."""
    t = Try(STUDY_PROCESS, "study report on a hot rollback journal")
    hot = c.work / "study-hot-journal"
    shutil.copytree(study, hot)
    committed = len(_rows(hot / "answers.sqlite"))
    run([sys.executable, "-c", HOT_JOURNAL, str(hot / "answers.sqlite")])
    if not (hot / "answers.sqlite-journal").exists():
        t.skipped = "no hot journal was left behind to test with"
        return t
    report = videogan("study", "report", str(hot), "--out", str(c.work / "report-hot"))
    o = t.judge(run(report), "study report")
    reported = (_json_line(o.stdout) or {}).get("answers")
    if o.returncode == 0 and reported != committed:
        t.problem("the report counts other answers than were committed", detail=f"{reported} != {committed}")
    return t


def study_jobs(c: Campaign) -> list[Job]:
    def job() -> list[Try]:
        study = c.work / "study"
        o = run(videogan("study", "create", "--a", "synthetic", "--b", "synthetic", "--out", str(study),
                         "--pairs", str(c.plan.pairs), "--catch", str(c.plan.catch), "--frames", "4",
                         "--size", "8", "--upscale", "2", "--quiet"))
        if o.returncode != 0:
            return skipped(STUDY_PROCESS, f"study create failed ({tail(o.stderr, 1)})")
        tries = StudyLoad(c, study, c.plan.pairs + c.plan.catch).run()
        return tries + [hot_journal_try(c, study)]

    return [job]


# ----------------------------------------------------------------------------- the campaign

CATEGORIES = {
    "train-kill": train_kill_jobs,
    "train-signal": train_signal_jobs,
    "checkpoint-kill": checkpoint_kill_jobs,
    "prepare-kill": prepare_kill_jobs,
    "corrupt-shards": corrupt_shard_jobs,
    "full-disk": full_disk_jobs,
    "cli-fuzz": cli_fuzz_jobs,
    "hostile-files": hostile_jobs,
    "study-server": study_jobs,
}
ALONE = {"full-disk", "study-server"}  # timing-sensitive or mounting: run with nothing beside them


def harness_failed(name: str, error: Exception) -> list[Try]:
    return [Try(name, "harness", skipped=f"harness error: {type(error).__name__}: {error}")]


def guarded(name: str, job: Job) -> list[Try]:
    """A job's tries; a failure of the harness itself becomes a skipped try that says so, not the end of the
    campaign."""
    try:
        return job()
    except Exception as e:  # noqa: BLE001
        return harness_failed(name, e)


def run_campaign(c: Campaign, categories: list[str], jobs: int) -> list[Try]:
    make_references(c)
    tries: list[Try] = []
    for name in categories:
        started = time.monotonic()
        try:
            planned = CATEGORIES[name](c)  # planning may run commands too (checkpoint-kill records its calls)
        except Exception as e:  # noqa: BLE001
            planned = [functools.partial(harness_failed, name, e)]
        mine: list[Try] = []
        with concurrent.futures.ThreadPoolExecutor(1 if name in ALONE else jobs) as pool:
            for result in pool.map(functools.partial(guarded, name), planned):
                mine += result
        tries += mine
        print(f"{name}: {time.monotonic() - started:.0f} s, {sum(t.survived for t in mine)} of "
              f"{sum(t.skipped is None for t in mine)} survived", file=sys.stderr, flush=True)
    return tries


def meet_signals_as_from_a_terminal() -> None:
    """A shell that starts this harness in the background sets SIGINT to be ignored, and an ignored signal
    stays ignored through exec: the commands would never see the Ctrl-C they are sent. With a handler here,
    every command starts with the default."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fixtures(work: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), FIXTURES_FLAG, str(work / "fixtures")]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"faults.py: cannot make the fixtures: {last}")
    return json.loads(done.stdout)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == INJECT_FLAG:
        sys.exit(inject_and_run(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == FIXTURES_FLAG:
        print(json.dumps(make_fixtures(Path(sys.argv[2]))))
        return

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer tries per category (~2-3 minutes on 2 cores)")
    ap.add_argument("--seed", type=int, default=0, help="kill times, fuzzed commands, raters' choices")
    ap.add_argument("--jobs", type=int, default=2, help="tries run at once (each command uses one thread)")
    ap.add_argument("--raters", type=int, default=36, help="concurrent raters on the study server")
    ap.add_argument("--only", nargs="+", choices=list(CATEGORIES), help="run these categories only")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "faults", help="where faults.md, .json go")
    ap.add_argument("--work", type=Path, help="work folder (default: a new temporary one, removed after)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder, to look at what was left")
    args = ap.parse_args()
    meet_signals_as_from_a_terminal()

    work = (args.work or Path(tempfile.mkdtemp(prefix="videogan-faults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    _WORK.append(str(work))
    started = time.monotonic()
    try:
        plan = QUICK if args.quick else FULL
        campaign = Campaign(work, args.seed, plan, args.raters, fixtures(work))
        tries = run_campaign(campaign, args.only or list(CATEGORIES), max(1, args.jobs))
    finally:
        if not args.keep_work and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.monotonic() - started)
    rows = summarise(tries)
    floor = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # no child's peak reads lower
    today = datetime.date.today()
    command = f"python benchmarks/faults.py{' --quick' if args.quick else ''} --seed {args.seed}"
    text = (f"`{command}` ({seconds} s, {campaign.fixtures['cpu']}, {os.cpu_count()} cores, {today}; peak "
            f"memory per process from wait4, at least the harness's own {floor} MB)\n\n{table(rows)}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.md").write_text(text)
    (args.out / "faults.json").write_text(json.dumps({
        "seed": args.seed, "quick": args.quick, "seconds": seconds, "machine": campaign.fixtures["cpu"],
        "date": str(today), "harness_peak_mb": floor,
        "reference_seconds": {"train": campaign.ref_run_seconds, "prepare": campaign.ref_prepare_seconds},
        "rows": rows, "tries": [asdict(t) for t in tries]}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
