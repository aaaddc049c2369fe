"""What `videogan prepare` reads: INPUT arguments expanded into video sources.

A source is a local path or an fsspec URL (http(s)://, s3://, gs://, ...), optionally cut to a span of
seconds. INPUTs are video files, folders (local, or listable URLs such as s3://bucket/videos/), .txt lists of
paths, and manifest files (.csv, .jsonl, .parquet) with a `path` or `url` column and optional `start`/`end`
seconds. Bad entries (a missing file, a malformed row) come back as report entries, not exceptions: one typo
in a list of a million videos must not stop the job. A URL that cannot be reached is found, and reported,
when it is decoded.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decode import VIDEO_SUFFIXES, DataError, TimedFrame, iter_timed_frames, videos_in

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class VideoSource:
    location: str  # a local path or an fsspec URL
    start: float = 0.0  # seconds on the video's own timeline (frame timestamps), as ffmpeg's -ss
    end: float = math.inf  # seconds; frames at or after `end` are left out

    @property
    def is_url(self) -> bool:
        return is_url(self.location)

    @property
    def trimmed(self) -> bool:
        return self.start > 0 or self.end < math.inf

    def __str__(self) -> str:
        """The location, and the span when there is one: how reports, clip metadata and the inputs' digest
        name it (an untrimmed local file is just its path, as before spans existed)."""
        if not self.trimmed:
            return self.location
        end = "" if self.end == math.inf else f"{self.end:g}"
        return f"{self.location}#t={self.start:g},{end}"

    def sort_key(self) -> tuple[str, float, float]:
        return self.location, self.start, self.end


def is_url(text: str) -> bool:
    return "://" in str(text)


def source(value: VideoSource | str | os.PathLike) -> VideoSource:
    return value if isinstance(value, VideoSource) else VideoSource(str(value))


def skipped(where: str, reason: str) -> dict:
    """A report entry for an input that gave no video."""
    return {"path": where, "status": "skipped", "reason": reason, "frames": 0, "shots": 0, "clips": 0,
            "dropped_unstable": 0, "dropped_static": 0}


# ----------------------------------------------------------------------------- listing

def list_inputs(inputs: list[str | os.PathLike]) -> tuple[list[VideoSource], list[dict]]:
    """Expand INPUT arguments into video sources, in a stable order, and report entries for bad ones.

    Files given explicitly are taken whatever their suffix (a non-video then fails in decoding and is
    reported); folders are searched recursively for video suffixes; a .txt file lists one path per line
    (relative to the list's folder; blank lines and # comments ignored); a manifest lists one source per row.
    """
    sources: list[VideoSource] = []
    missing: list[dict] = []
    for item in map(str, inputs):
        suffix = Path(item.split("?")[0]).suffix.lower()
        if suffix in MANIFEST_SUFFIXES:
            found, bad = read_manifest(item)
            sources, missing = sources + found, missing + bad
        elif is_url(item):
            sources += [VideoSource(url) for url in _urls_under(item)]
        elif Path(item).is_dir():
            sources += [VideoSource(str(p)) for p in videos_in(Path(item))]
        elif Path(item).is_file() and suffix == ".txt":
            found, bad = _read_list(Path(item))
            sources, missing = sources + found, missing + bad
        elif Path(item).is_file():
            sources.append(VideoSource(item))
        else:
            missing.append(skipped(item, "no such file or directory"))
    unique = list(dict.fromkeys(sources))  # the same source twice would duplicate its clips
    return unique, missing


def _read_list(path: Path) -> tuple[list[VideoSource], list[dict]]:
    sources, missing = [], []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = _local_or_url(line, path.parent)
            if entry is None:
                missing.append(skipped(line, f"listed in {path} but not found"))
            else:
                sources.append(VideoSource(entry))
    return sources, missing


def _local_or_url(text: str, base: Path | None) -> str | None:
    """A URL as it is; a local path resolved against the list's folder, None when there is no such file."""
    if is_url(text):
        return text
    path = Path(text) if Path(text).is_absolute() or base is None else base / text
    return str(path) if path.is_file() else None


def _urls_under(url: str) -> list[str]:
    """A URL, or the video files under it when it names a listable folder (s3://bucket/videos/, ...)."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
        if not fs.isdir(root):
            return [url]
        found = [p for p in fs.find(root) if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    except (OSError, ValueError, ImportError) as e:
        raise DataError(f"{url}: cannot list ({type(e).__name__}: {e})") from None
    return sorted(fs.unstrip_protocol(p) for p in found)


# ----------------------------------------------------------------------------- manifests

def read_manifest(where: str) -> tuple[list[VideoSource], list[dict]]:
    """Sources of a manifest file (local or URL): .csv (with a header row), .jsonl (one object per line) or
    .parquet, with a `path` or `url` column and optional `start`/`end` seconds. Relative paths are relative to
    the manifest's folder. Returns the sources and one report entry per bad row, naming the row."""
    suffix = Path(where.split("?")[0]).suffix.lower()
    try:
        data = _read_bytes(where)
        rows = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".parquet": _parquet_rows}[suffix](data)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise DataError(f"{where}: cannot read the manifest ({type(e).__name__}: {e})") from None
    base = None if is_url(where) else Path(where).parent
    sources, missing = [], []
    for number, row in enumerate(rows, start=1):
        try:
            sources.append(_row_source(row, base))
        except ValueError as e:
            name = row.get("path") or row.get("url") if isinstance(row, dict) else None
            missing.append(skipped(str(name or f"{where} row {number}"), f"{where} row {number}: {e}"))
    return sources, missing


def _read_bytes(where: str) -> bytes:
    if not is_url(where):
        return Path(where).read_bytes()
    import fsspec

    with fsspec.open(where, "rb") as f:
        return f.read()


def _csv_rows(data: bytes) -> list[dict]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    return [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]


def _jsonl_rows(data: bytes) -> list[Any]:
    rows = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                rows.append(f"not JSON ({e.msg})")  # reported as a bad row by _row_source
    return rows


def _parquet_rows(data: bytes) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet manifests needs pyarrow: pip install 'videogan[parquet]'") from None
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _row_source(row: Any, base: Path | None) -> VideoSource:
    """One manifest row as a source; ValueError with the reason for a bad row."""
    if not isinstance(row, dict):
        raise ValueError(row if isinstance(row, str) else "not an object")
    location = row.get("path") or row.get("url")
    if not isinstance(location, str) or not location.strip():
        raise ValueError("no `path` or `url`")
    start, end = _seconds(row.get("start"), "start", 0.0), _seconds(row.get("end"), "end", math.inf)
    if end <= start:
        raise ValueError(f"end ({end:g}) is not after start ({start:g})")
    resolved = _local_or_url(location.strip(), base)
    if resolved is None:
        raise ValueError(f"{location}: no such file")
    return VideoSource(resolved, start, end)


def _seconds(value: Any, name: str, default: float) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, float) and math.isnan(value):  # an empty Parquet/pandas cell
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not 0 <= seconds < math.inf:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return seconds


# ----------------------------------------------------------------------------- decoding

def timed_frames(video: VideoSource, short_side: int | None = None) -> Iterator[TimedFrame]:
    """The frames of a source within its span, local or remote (see decode.iter_timed_frames)."""
    with _opened(video) as file:
        for frame in iter_timed_frames(file, short_side=short_side, name=video.location, seek=video.start):
            if frame.time < video.start - 1e-6:
                continue
            if frame.time >= video.end - 1e-6:
                return
            yield frame


@contextmanager
def _opened(video: VideoSource):
    """A local path as it is (PyAV reads it directly); a URL as a file object from fsspec."""
    if not video.is_url:
        yield video.location
        return
    import fsspec

    from .decode import VideoDecodeError

    try:
        opened = fsspec.open(video.location, "rb")
        file = opened.open()
    except (OSError, ValueError, ImportError) as e:  # unreachable host, no such object, no driver
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VideoDecodeError(f"{video.location}: cannot open ({reason})") from None
    try:
        yield file
    finally:
        file.close()
