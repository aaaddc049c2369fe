"""`videogan prepare --partition I/N` and `--finalize`: the work split into deterministic partitions, each
run on its own (a Slurm array task, a Kubernetes indexed job), and the data set made once all are done."""
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from videogan.cli import main
from videogan.data import prepare as prepare_module
from videogan.data.decode import DataError
from videogan.data.prepare import PrepareConfig, parse_partition, partition_members, prepare
from videogan.data.shards import resolve_shards

FAST = dict(size=16, frames=8, stabilize=False, clips_per_shard=3)
OPTIONS = ["--size", "16", "--frames", "8", "--no-stabilize", "--clips-per-shard", "3", "--workers", "1",
           "--quiet"]


@pytest.fixture
def videos(make_video, tmp_path):
    """Five videos of 2 to 6 clips (20 in all), and a path that does not exist."""
    made = [make_video(f"v{i}.mp4", count=16 + 8 * i, seed=i) for i in range(5)]
    return [*made, tmp_path / "missing.mp4"]


def clips(folder: Path) -> dict[str, bytes]:
    """Every member of every shard the folder's manifest lists, by member name (the sample key and
    extension), whichever shard holds it: the clips, independent of how they were grouped into shards."""
    members = {}
    for shard in resolve_shards(str(folder)):
        with tarfile.open(shard) as tar:
            for info in tar.getmembers():
                assert info.name not in members, f"{info.name} twice"
                members[info.name] = tar.extractfile(info).read()
    return members


def report(folder: Path) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"}
            for e in json.loads((folder / "report.json").read_text())["videos"]]


def run_partition(videos: list[Path], out: Path, partition: str) -> int:
    return main(["prepare", *map(str, videos), "--out", str(out), "--partition", partition, *OPTIONS])


def test_partitions_run_separately_then_finalized_give_the_same_clips_as_one_run(videos, tmp_path, capsys):
    assert main(["prepare", *map(str, videos), "--out", str(tmp_path / "whole"), *OPTIONS]) == 0
    whole = json.loads(capsys.readouterr().out)
    out = tmp_path / "split"
    # In any order, each given the inputs in another order (a different shell glob on each node).
    for partition, given in (("2/3", videos[::-1]), ("0/3", videos), ("1/3", videos[2:] + videos[:2])):
        assert run_partition(given, out, partition) == 0
        assert json.loads(capsys.readouterr().out)["partition"] == partition
    assert not (out / "manifest.json").exists()  # only --finalize makes the data set
    assert main(["prepare", "--finalize", str(out), "--quiet"]) == 0
    split = json.loads(capsys.readouterr().out)

    assert clips(out) == clips(tmp_path / "whole") and len(clips(out)) == 2 * 20
    assert report(out) == report(tmp_path / "whole")
    assert {k: split[k] for k in ("clips_written", "videos_ok", "videos_skipped", "frames")} == {
        k: whole[k] for k in ("clips_written", "videos_ok", "videos_skipped", "frames")} == {
        "clips_written": 20, "videos_ok": 5, "videos_skipped": 1, "frames": 16 * 5 + 8 * 10}
    manifest = json.loads((out / "manifest.json").read_text())
    names = [p.name for p in sorted(out.glob("clips-*.tar"))]
    assert manifest["shards"] == names and names[0] == "clips-p00000-000000.tar"
    assert manifest["partitions"] == 3 and manifest["summary"]["shards"] == len(names)
    assert json.loads((tmp_path / "whole" / "manifest.json").read_text())["shards"] == [
        f"clips-p00000-{i:06d}.tar" for i in range(7)]  # a plain run is partition 0 of 1
    # The local engine over partitions gives them too; finalizing again, or re-running a partition, changes
    # nothing.
    prepare(videos, tmp_path / "engine", PrepareConfig(**FAST), partitions=3, progress=False)
    assert clips(tmp_path / "engine") == clips(out)
    assert main(["prepare", "--finalize", str(out), "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_partitions_are_a_function_of_the_sorted_inputs_and_their_number():
    assert [list(partition_members(7, i, 3)) for i in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [list(partition_members(2, i, 4)) for i in range(4)] == [[0], [1], [], []]
    assert parse_partition("3/8") == (3, 8)
    for bad in ("8/8", "-1/4", "1", "a/b", "0/0", "1/100000"):
        with pytest.raises(DataError, match="--partition"):
            parse_partition(bad)


# Run as a script: partition 1 of 2, killed outright (SIGKILL) while writing its second shard: as a node
# that loses power or a job the scheduler kills, with no chance to clean up.
KILLED_MIDWAY = """
    import os, signal, sys
    from videogan.cli import main
    from videogan.data import prepare as prepare_module

    real_write, begun = prepare_module.write_shard, []

    def killed_in_the_second_shard(path, samples):
        begun.append(path)

        def until_killed():
            for number, sample in enumerate(samples):
                if len(begun) == 2 and number == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield sample
        return real_write(path, until_killed())

    prepare_module.write_shard = killed_in_the_second_shard
    sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_partition_rerun_loses_and_duplicates_nothing(videos, tmp_path, monkeypatch, capsys):
    prepare(videos, tmp_path / "whole", PrepareConfig(**FAST), progress=False)
    out = tmp_path / "split"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_MIDWAY))
    command = ["prepare", *map(str, videos), "--out", str(out), "--partition", "1/2", *OPTIONS]
    killed = subprocess.run([sys.executable, str(script), *command], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert [p.name for p in out.glob("clips-*.tar")] == ["clips-p00001-000000.tar"]
    assert list(out.glob(".clips-p00001-000001.*.tar"))  # the shard it was writing, left half done
    assert not (out / "done-p00001.json").exists()

    # What partition 0, running now on another machine, is writing: not this partition's to remove.
    (out / ".clips-p00000-000000.k2x9q7ab.tar").write_bytes(b"partial")
    assert main(command) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["resumed"]
    assert [p.name for p in out.glob(".*.tar")] == [".clips-p00000-000000.k2x9q7ab.tar"]
    assert run_partition(videos, out, "0/2") == 0
    assert main(["prepare", "--finalize", str(out), "--quiet"]) == 0
    assert clips(out) == clips(tmp_path / "whole")  # `clips` also fails on a clip stored twice
    assert report(out) == report(tmp_path / "whole")

    # Re-running a finished partition does nothing: no shard is written again.
    monkeypatch.setattr(prepare_module, "write_shard", lambda *_: pytest.fail("wrote a shard again"))
    capsys.readouterr()
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["already_complete"]


def test_finalize_names_the_missing_partitions_and_exits_non_zero(videos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "split"
    for partition in ("0/4", "2/4"):
        assert run_partition(videos, out, partition) == 0
    # Partition 3 was interrupted: begun, not complete.
    monkeypatch.setattr(prepare_module, "write_shard", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run_partition(videos, out, "3/4") == 130
    capsys.readouterr()
    assert main(["prepare", "--finalize", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"videogan: error: {out}: 2 of 4 partitions not complete: 1, 3 (run ")
    assert error.count("\n") == 1 and not (out / "manifest.json").exists()

    # Another number of partitions, or other settings, into the same folder are refused.
    assert run_partition(videos, out, "1/3") == 2
    assert "other inputs or settings" in capsys.readouterr().err
    assert main(["prepare", "--finalize", str(tmp_path / "nothing")]) == 2
    assert "no partition of a preparation here" in capsys.readouterr().err
    assert main(["prepare", str(videos[0]), "--finalize", str(out)]) == 2
    assert main(["prepare", str(videos[0])]) == 2
    assert main(["prepare", str(videos[0]), "--out", str(out), "--partition", "4/4"]) == 2
    assert "--partition 4/4" in capsys.readouterr().err
