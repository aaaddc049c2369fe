"""`videogan prepare --out s3://...` and `videogan train --data s3://...`, against a local S3-compatible
server (moto's) that the tests start on 127.0.0.1: every output is uploaded whole, so no reader ever sees a
partial shard; partitions, --finalize and resuming work there as in a local folder, with the same bytes;
training streams from it."""
import io
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import fsspec
import pytest

from videogan.cli import main
from videogan.config import DataConfig
from videogan.data import prepare as prepare_module
from videogan.data.decode import DataError
from videogan.data.prepare import PrepareConfig, prepare
from videogan.data.shards import read_shard, resolve_shards
from videogan.data.storage import Folder
from videogan.data.streaming import PASS_END, ShardClips

boto3 = pytest.importorskip("boto3")
s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

FAST = dict(size=16, frames=8, stabilize=False, clips_per_shard=3)
OPTIONS = ["--size", "16", "--frames", "8", "--no-stabilize", "--clips-per-shard", "3", "--workers", "1",
           "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The endpoint of a moto S3 server on 127.0.0.1, with this process's environment pointing at it (the
    variables a user sets for an S3-compatible server: credentials and AWS_ENDPOINT_URL)."""
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise, on stderr
    moto = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        s3fs.S3FileSystem.clear_instance_cache()  # none made before the variables were set
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
    moto.stop()


@pytest.fixture
def bucket(server, request):
    """A fresh, empty bucket for each test, and a boto3 client to look into it (not through s3fs's caches)."""
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    client = boto3.client("s3", endpoint_url=server)
    client.create_bucket(Bucket=name)
    return name, client


def objects(client, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, by key, as a reader sees it now."""
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def assert_only_whole_files(found: dict[str, bytes]) -> None:
    """No temporary or hidden object but prepare's own state file; every shard a complete tar archive."""
    for key, data in found.items():
        name = key.rsplit("/", 1)[-1]
        assert not name.startswith(".") or name.startswith(".prepare-state-p"), key
        if name.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # raises on a cut-short archive
                assert all(tar.extractfile(m).read() for m in tar.getmembers())
        elif name.endswith(".json"):
            json.loads(data)


def checked_while_writing(client, bucket: str, monkeypatch) -> list[int]:
    """Make every shard write look into the bucket first, while the partition runs: what readers see then
    must be whole files only. Returns the number of shards seen at each look."""
    real_write, seen = prepare_module.write_shard, []

    def looking(path, samples):
        found = objects(client, bucket)
        assert_only_whole_files(found)
        seen.append(sum(key.endswith(".tar") for key in found))
        return real_write(path, samples)

    monkeypatch.setattr(prepare_module, "write_shard", looking)
    return seen


@pytest.fixture
def videos(make_video, tmp_path):
    """Four videos of 2 to 5 clips (14 in all), and a path that does not exist."""
    made = [make_video(f"v{i}.mp4", count=16 + 8 * i, seed=i) for i in range(4)]
    return [*made, tmp_path / "missing.mp4"]


def without_seconds(data: bytes) -> dict:
    """A manifest or report with the run's timings left out (the only thing two runs differ in)."""
    data = json.loads(data)
    data.get("summary", {}).pop("seconds", None)
    for entry in data.get("videos", []):
        entry.pop("seconds", None)
    return data


def test_partitions_to_s3_then_finalize_give_a_local_run_s_bytes(videos, tmp_path, bucket, monkeypatch,
                                                                   capsys):
    name, client = bucket
    local = tmp_path / "local"
    prepare(videos, local, PrepareConfig(**FAST), partitions=2, progress=False)
    seen = checked_while_writing(client, name, monkeypatch)
    url = f"s3://{name}/clips/"
    for partition in ("1/2", "0/2"):
        assert main(["prepare", *map(str, videos), "--out", url, "--partition", partition, *OPTIONS]) == 0
        assert json.loads(capsys.readouterr().out)["partition"] == partition
    assert seen == [0, 1, 2, 3, 4] and "clips/manifest.json" not in objects(client, name)
    assert main(["prepare", "--finalize", url, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["clips_written"] == 14

    found = objects(client, name)
    assert_only_whole_files(found)
    shards = sorted(p.name for p in local.glob("clips-*.tar"))
    assert sorted(found) == sorted(f"clips/{n}" for n in [*shards, "done-p00000.json", "done-p00001.json",
                                                         "report-p00000.json", "report-p00001.json",
                                                         "manifest.json", "report.json"])
    for shard in shards:
        assert found[f"clips/{shard}"] == (local / shard).read_bytes(), shard
    for doc in ("manifest.json", "report.json"):
        assert without_seconds(found[f"clips/{doc}"]) == without_seconds((local / doc).read_bytes())

    # Readers take the manifest's shards, in its order, through fsspec; the samples are the local ones.
    urls = resolve_shards(url)
    assert urls == [f"{url}{n}" for n in json.loads(found["clips/manifest.json"])["shards"]]
    assert [s["jpg"] for u in urls for s in read_shard(u)] == [
        s["jpg"] for p in resolve_shards(str(local)) for s in read_shard(p)]
    # Two readers (ranks, or DataLoader workers) stream different shards of it, and all of them between them.
    shards = ShardClips(url, 8, 16, cfg=DataConfig(shuffle_within_pass=True))
    keys = [[s["__key__"] for s in itertools.takewhile(lambda s: s is not PASS_END,
                                                       shards.stream(rank=r, world_size=2).raw(r, 2))]
            for r in range(2)]
    assert sorted(keys[0] + keys[1]) == sorted(s["__key__"] for u in urls for s in read_shard(u))
    assert keys[0] and keys[1] and not set(keys[0]) & set(keys[1])
    # Finalizing again, or re-running a finished partition, changes nothing.
    monkeypatch.setattr(prepare_module, "write_shard", lambda *_: pytest.fail("wrote a shard again"))
    assert main(["prepare", *map(str, videos), "--out", url, "--partition", "0/2", *OPTIONS]) == 0
    assert json.loads(capsys.readouterr().out)["already_complete"]
    assert main(["prepare", "--finalize", url, "--quiet"]) == 0
    assert objects(client, name) == found


def test_an_interrupted_run_on_s3_leaves_whole_shards_and_resumes(videos, tmp_path, bucket, monkeypatch,
                                                                   capsys):
    """Ctrl-C halfway through writing the third shard: the bucket holds the two whole shards and the state
    file, nothing of the third; the same command resumes and gives a local run's bytes."""
    name, client = bucket
    whole = prepare(videos, tmp_path / "local", PrepareConfig(**FAST), progress=False)
    real_write, begun = prepare_module.write_shard, []

    def interrupted_in_the_third_shard(path, samples):
        begun.append(path)

        def until_interrupted():
            for number, sample in enumerate(samples):
                if len(begun) == 3 and number == 1:
                    raise KeyboardInterrupt
                yield sample
        return real_write(path, until_interrupted())

    monkeypatch.setattr(prepare_module, "write_shard", interrupted_in_the_third_shard)
    url = f"s3://{name}/clips"
    with pytest.raises(KeyboardInterrupt):
        prepare(videos, url, PrepareConfig(**FAST), progress=False)
    found = objects(client, name)
    assert_only_whole_files(found)
    assert sorted(found) == ["clips/.prepare-state-p00000.json", "clips/clips-p00000-000000.tar",
                             "clips/clips-p00000-000001.tar"]
    assert "run the same command again to resume" in capsys.readouterr().err

    monkeypatch.setattr(prepare_module, "write_shard", real_write)
    summary = prepare(videos, url, PrepareConfig(**FAST), progress=False)
    assert summary.resumed and summary.out == url and summary.clips_written == whole.clips_written == 14
    found = objects(client, name)
    assert_only_whole_files(found)
    assert ".prepare-state-p00000.json" not in " ".join(found)
    for shard in sorted((tmp_path / "local").glob("clips-*.tar")):
        assert found[f"clips/{shard.name}"] == shard.read_bytes(), shard.name


def test_train_streams_three_steps_from_s3(videos, tmp_path, bucket, server):
    name, client = bucket
    url = f"s3://{name}/clips/"
    prepare(videos, url, PrepareConfig(**{**FAST, "size": 8, "frames": 4}), progress=False)
    # A fresh process, as a user runs it: the server is known from the environment alone.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "videogan", "train", "--preset", "tiny", "--out", str(tmp_path / "run"),
         "--data", url, "--steps", "3", "--quiet", "--device", "cpu", "--set", "model.frames=4",
         "--set", "model.size=8", "--set", "model.g_width=8", "--set", "model.d_width=4",
         "--set", "train.batch_size=2", "--set", "data.workers=2", "--set", "data.shuffle_buffer=4",
         "--set", "train.sample_every=0"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["step"] == 3
    assert "skipped" not in done.stderr  # every shard read whole from the server


def test_a_missing_bucket_or_driver_is_one_line(videos, server, monkeypatch, capsys):
    assert main(["prepare", str(videos[0]), "--out", "s3://no-such-bucket/clips/", *OPTIONS]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("videogan: error: s3://no-such-bucket/clips/") and "cannot write" in error
    assert len(error.splitlines()) == 1 and "bucket does not exist" in error, error
    with pytest.raises(DataError, match=r"^s3://no-such-bucket/clips/: no \.tar shards in this folder$"):
        resolve_shards("s3://no-such-bucket/clips/")

    # An endpoint that does not answer: one line naming the folder and what to check.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        assert main(["prepare", "--finalize", "s3://no-such-bucket/clips/", "--quiet"]) == 2
    finally:
        s3fs.S3FileSystem.clear_instance_cache()  # the next test's must reach the server again
    error = capsys.readouterr().err.strip()
    assert error.startswith("videogan: error: s3://no-such-bucket/clips/: cannot list "
                            "(EndpointConnectionError")
    assert error.endswith("check the URL, the credentials and the endpoint (AWS_ENDPOINT_URL for an "
                          "S3-compatible server)") and len(error.splitlines()) == 1

    # Without s3fs (not imported yet, not installed), one line says what to install.
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)  # s3fs's class
    monkeypatch.setitem(sys.modules, "s3fs", None)
    expected = "s3://b/clips/: s3:// needs a driver that is not installed: pip install 'videogan[cloud]'"
    with pytest.raises(DataError) as raised:
        resolve_shards("s3://b/clips/")
    assert str(raised.value) == expected
    assert main(["prepare", str(videos[0]), "--out", "s3://b/clips/", *OPTIONS]) == 2
    assert capsys.readouterr().err.strip() == f"videogan: error: {expected}"


def test_other_fsspec_file_systems_write_a_hidden_name_then_move(tmp_path, monkeypatch):
    """memory://: neither local nor an object store. A failed write leaves nothing, a good one only the file;
    a local folder gets media.write_json's bytes as before."""
    folder = Folder("memory://videogan-test/out")
    folder.make()

    def fails_halfway(path: Path) -> None:
        path.write_text("{")
        raise ValueError("the writer failed")

    with pytest.raises(ValueError, match="the writer failed"):
        folder.write("a.json", fails_halfway)
    assert folder.glob("*") == [] and folder.read_bytes("a.json") is None
    moved, real_mv = [], folder.fs.mv
    monkeypatch.setattr(folder.fs, "mv", lambda src, dst: (moved.append((src, dst)), real_mv(src, dst)))
    folder.write("a.json", lambda path: path.write_text('{"x": 1}\n'))
    assert folder.glob("*.json") == ["a.json"] and json.loads(folder.read_bytes("a.json")) == {"x": 1}
    (src, dst), = moved
    assert src.rsplit("/", 1)[1].startswith(".a.") and dst.endswith("/out/a.json")
    assert str(folder / "a.json") == "memory://videogan-test/out/a.json"
    folder.remove("a.json")
    folder.remove("a.json")  # gone already: nothing to do
    assert folder.glob("*") == []
    fsspec.filesystem("memory").rm("/videogan-test", recursive=True)

    local = Folder(tmp_path / "out")
    local.make()
    from videogan.media import write_json
    local.write("b.json", lambda path: write_json(path, {"x": 1}))
    assert (tmp_path / "out" / "b.json").read_text() == '{\n  "x": 1\n}\n'
    assert local / "b.json" == tmp_path / "out" / "b.json" and local.glob(".*") == []


def test_inputs_from_s3_a_folder_and_a_manifest_with_spans(make_video, bucket, tmp_path):
    """Videos read from the bucket, as a listed folder and through a manifest that lives there too, give the
    same clips as the same files on disk."""
    name, client = bucket
    local = [make_video(f"v{i}.mp4", count=16 + 8 * i, seed=i) for i in range(2)]
    for path in local:
        client.put_object(Bucket=name, Key=f"raw/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=name, Key="lists/spans.jsonl",
                      Body=f'{{"url": "s3://{name}/raw/v1.mp4", "start": 0.8}}\n'.encode())

    assert main(["prepare", f"s3://{name}/raw/", "--out", str(tmp_path / "remote"), *OPTIONS]) == 0
    assert main(["prepare", *map(str, local), "--out", str(tmp_path / "here"), *OPTIONS]) == 0
    remote = frames_of(tmp_path / "remote")
    assert remote == frames_of(tmp_path / "here") and len(remote) == 5

    assert main(["prepare", f"s3://{name}/lists/spans.jsonl", "--out", str(tmp_path / "span"), *OPTIONS]) == 0
    report = json.loads((tmp_path / "span" / "report.json").read_text())["videos"]
    assert [(e["path"], e["status"], e["clips"]) for e in report] == [
        (f"s3://{name}/raw/v1.mp4#t=0.8,", "ok", 2)]  # 16 of its 24 frames


def frames_of(folder: Path) -> dict[str, bytes]:
    """The clips' images by sample key (their metadata names the source, which differs between the runs)."""
    found = {}
    for shard in resolve_shards(str(folder)):
        for sample in read_shard(shard):
            found[sample["__key__"]] = sample["jpg"]
    return found
