"""Clips in WebDataset tar shards: writing them (for `videogan prepare`), finding them, and reading and
decoding them one sample at a time.

A sample is one clip: `<key>.jpg` (or lossless `<key>.png`) holding its T frames of S x S stacked
vertically into one S-wide, T*S-high RGB image, plus `<key>.json` metadata (opaque here, except
`frames`, `size` and `crc32`, the CRC-32 of the image bytes). Shards are plain tar files, so they can be
read from a local folder, over http(s), or from any `pipe:` command (e.g. `pipe:aws s3 cp
s3://bucket/clips-000001.tar -`), and the data set can be far larger than one disk or one machine's memory.
A folder that `videogan prepare` wrote is read as its manifest.json lists it.

Reading forgives damage: a shard that cannot be opened or is cut short gives the samples before the damage
and one warning (`read_shard`); a sample whose image is missing, does not match its crc32 or is not a stack of
square frames raises a DataError naming the shard and the key. `streaming.ShardClips` streams shards to
training, skipping such samples.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import braceexpand
import cv2
import numpy as np
import simplejpeg
import torch
from PIL import Image
from webdataset import TarWriter
from webdataset.tariterators import url_opener

from ..media import atomic_path
from .decode import DataError, warn
from .storage import Folder, file_system, streamed_by_fsspec

IMAGE_KEYS = ("jpg", "png", "jpeg")
URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, pipe:, file:, s3:, gs:, ...
MANIFEST = "manifest.json"  # what `videogan prepare` writes last in its folder, listing the shards

cv2.setNumThreads(1)  # imdecode is single-threaded anyway; keep cv2's pool out of DataLoader workers


# ----------------------------------------------------------------------------- writing


def encode_clip(key: str, clip: np.ndarray, meta: dict, lossless: bool = False, quality: int = 85) -> dict:
    """A WebDataset sample for one clip uint8 [T, S, S, 3] (RGB): the frames stacked vertically into one
    image (`jpg` at `quality`, 4:2:0 chroma, or lossless `png`) and `json` metadata, with `frames` and
    `size` set from the clip and `crc32` from the image bytes (readers check it: a flipped bit in a JPEG
    often still decodes, into a wrong clip)."""
    assert isinstance(clip, np.ndarray) and clip.dtype == np.uint8, "clip must be a uint8 numpy array"
    assert clip.ndim == 4 and clip.shape[3] == 3 and clip.shape[1] == clip.shape[2], \
        f"clip must be [T, S, S, 3], got {list(clip.shape)}"
    assert "." not in key and "/" not in key and key, f"bad sample key {key!r}"
    t, s = clip.shape[0], clip.shape[1]
    stacked = np.ascontiguousarray(clip).reshape(t * s, s, 3)
    bgr = cv2.cvtColor(stacked, cv2.COLOR_RGB2BGR)
    if lossless:
        ok, buf = cv2.imencode(".png", bgr)
        ext = "png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        ext = "jpg"
    if not ok:  # pragma: no cover - OpenCV does not fail on a valid uint8 image
        raise DataError(f"{key}: cannot encode the clip as {ext}")
    image = buf.tobytes()
    meta = {**meta, "frames": t, "size": s, "crc32": zlib.crc32(image)}
    return {"__key__": key, ext: image, "json": json.dumps(meta, sort_keys=True).encode()}


def write_shard(path: str | os.PathLike, samples: Iterable[dict]) -> int:
    """Write `samples` (from `encode_clip`) to the tar shard `path` atomically and durably (media.atomic_path:
    a hidden temporary file in the same folder, synced, renamed over `path` only once complete, the folder
    synced). Byte-identical for identical samples (mtime 0). Returns the number of samples written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f, TarWriter(f, encoder=False, mtime=0) as writer:
        for sample in samples:
            writer.write(sample)
            count += 1
    return count


# ----------------------------------------------------------------------------- reading


def is_shard_source(source: str) -> bool:
    """Prepared shards: a URL or pipe: command, a brace pattern, a .tar file, or a folder of .tar files."""
    path = Path(source)
    return (URL_PATTERN.match(source) is not None or "{" in source or "::" in source
            or source.endswith(".tar") or (path.is_dir() and bool(_visible_tars(path))))


def _visible_tars(folder: Path) -> list[str]:
    """The folder's *.tar files, sorted, less hidden ones: an interrupted atomic write leaves its temporary
    file as `.NAME.XXXXXXXX.tar` (pathlib's glob would match it), holding a partial or duplicate shard."""
    return sorted(str(p) for p in folder.glob("*.tar") if p.is_file() and not p.name.startswith("."))


def _manifest_shards(manifest: Path) -> list[str] | None:
    """The shard names a prepared folder's manifest lists; None when there is no usable manifest (a warning
    says why when one is there but unreadable)."""
    return _listed_shards(manifest.read_bytes, manifest) if manifest.is_file() else None


def _listed_shards(read: Callable[[], bytes | None], manifest: Path | str) -> list[str] | None:
    """`_manifest_shards` of the manifest that `read` gives the bytes of (None: there is none)."""
    try:
        data = read()
        if data is None:
            return None
        listed = json.loads(data).get("shards")
    except (OSError, ValueError, AttributeError, RecursionError) as e:
        warn(f"{manifest}: unreadable ({type(e).__name__}); reading the folder's visible .tar files instead")
        return None
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        return None  # not written by `videogan prepare`
    return listed


def _folder_shards(folder: str) -> list[str]:
    """The shards of a folder: those its manifest.json lists (a prepared folder; others there are not part of
    it), else its visible *.tar files, sorted."""
    listed = _manifest_shards(Path(folder) / MANIFEST)
    if listed is None:
        found = _visible_tars(Path(folder))
        if not found:
            raise DataError(f"{folder}: no .tar shards in this folder")
        return found
    return _existing(folder, [os.path.join(folder, name) for name in listed], f"{MANIFEST} lists")


def _remote_folder_shards(source: str) -> list[str]:
    """`_folder_shards` of a folder URL (s3://bucket/clips/): one listing, and the manifest read if there is
    one."""
    folder = Folder(source)
    visible = {name for name in folder.glob("*.tar") if not name.startswith(".")}
    listed = _listed_shards(lambda: folder.read_bytes(MANIFEST), folder / MANIFEST)
    if listed is None:
        if not visible:
            raise DataError(f"{source}: no .tar shards in this folder")
        return [folder / name for name in sorted(visible)]
    there = {folder / name for name in visible}
    return _existing(source, [folder / name for name in listed], f"{MANIFEST} lists", there.__contains__)


def _existing(source: str, paths: list[str], what: str, exists=os.path.isfile) -> list[str]:
    """The `paths` that exist; a warning names the first missing one, DataError when none exists."""
    found = [p for p in paths if exists(p)]
    if not found:
        raise DataError(f"{source}: none of the {len(paths)} shards {what} exist")
    if len(found) < len(paths):
        missing = next(p for p in paths if not exists(p))
        warn(f"{source}: {len(paths) - len(found)} of {len(paths)} shards do not exist "
             f"(first: {missing}); reading the other {len(found)}")
    return found


def resolve_shards(source: str) -> list[str]:
    """The shard URLs of `source`: a folder (`_folder_shards`: the shards its manifest lists, else its visible
    *.tar files), one tar file, a brace pattern (`data/clips-{000000..000099}.tar`), http(s):// URLs or
    `pipe:` commands (passed to WebDataset's opener unchecked), or fsspec URLs (s3://bucket/clips/: a folder
    as a local one, read through fsspec; s3://bucket/clips-{000000..000009}.tar, or one .tar: unchecked).
    Several sources can be joined with `::`."""
    urls: list[str] = []
    for part in source.split("::"):
        part = part.strip()
        if not part:
            continue
        if streamed_by_fsspec(part):
            file_system(part)  # its driver is installed, or one line saying how to install it
            is_folder = "{" not in part and not part.endswith(".tar")
            urls += _remote_folder_shards(part) if is_folder else list(braceexpand.braceexpand(part))
        elif URL_PATTERN.match(part) and not os.path.exists(part):
            urls += list(braceexpand.braceexpand(part))
        elif os.path.isdir(part):
            urls += _folder_shards(part)
        elif os.path.isfile(part):
            urls.append(part)
        elif "{" in part:
            urls += _existing(part, list(braceexpand.braceexpand(part)), "of this pattern")
        else:
            raise DataError(f"{part}: no such shard file, folder or pattern")
    if not urls:
        raise DataError(f"{source!r}: no shards found")
    return urls


def decode_image(data: bytes, out: np.ndarray | None = None, fast_dct: bool = False) -> np.ndarray | None:
    """JPEG or PNG bytes -> uint8 [H, W, 3] RGB (None if they do not decode), written into `out` when given
    and large enough (the result is then a view of it).

    JPEG goes through simplejpeg (libjpeg-turbo, straight to RGB, straight into the batch): on this project's
    CPU ~40% faster than OpenCV's imdecode and ~70% faster than PIL on a 2048x64 stacked clip (see
    benchmarks/RESULTS.md); decoding is most of the loader's cost. Chroma is upsampled by replication merged
    with the colour conversion (libjpeg's "fast upsampling"): ~8% fewer instructions than the smooth
    upsampling, for ~0.2 grey levels of mean error. The inverse DCT is the exact integer one, or with
    `fast_dct` libjpeg-turbo's fast one (training's default, data.fast_dct: ~12% faster here, ~1 grey level of
    mean difference). PNG goes through OpenCV."""
    if data[:2] == b"\xff\xd8":
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast_dct, fastupsample=True,
                                          buffer=out)
        except ValueError:  # damaged, or larger than `out`
            try:
                return (simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast_dct, fastupsample=True)
                        if out is not None else None)
            except ValueError:
                return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if img is not None and out is not None and out.shape == img.shape:
        out[...] = img
        return out
    return img


def image_bytes(sample: dict) -> bytes | None:
    """The sample's image (its .jpg, .png or .jpeg member); None without one."""
    for k in IMAGE_KEYS:
        if k in sample:
            return sample[k]
    return None


def _meta(sample: dict) -> dict:
    raw = sample.get("json")
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except RecursionError:
        raise ValueError("json metadata nested too deep") from None
    if not isinstance(meta, dict):
        raise ValueError("json metadata is not an object")
    return meta


def sample_name(sample: dict) -> str:
    """The sample's "shard: clip key", for messages."""
    return f"{sample.get('__url__', '?')}: clip {sample.get('__key__', '?')}"


def _check_shape(width: int, height: int, meta: dict, where: str) -> tuple[int, int]:
    """(T, S) of a stacked image width x height, checked against the json's frames and size."""
    if width < 1 or height < width or height % width:
        raise DataError(f"{where}: image {width}x{height} is not a vertical stack of square frames")
    t, s = height // width, width
    if meta.get("size", s) != s or meta.get("frames", t) != t:
        raise DataError(f"{where}: image {width}x{height} holds {t} frames of {s}x{s}, but its json says "
                        f"{meta.get('frames')} frames of {meta.get('size')}")
    return t, s


def image_and_meta(sample: dict) -> tuple[bytes, dict, str]:
    """(image bytes, json metadata, "shard: clip key" for messages); DataError naming them if either is bad
    or the image's bytes differ from the crc32 its json records (shards from before that field: unchecked)."""
    where = sample_name(sample)
    data = image_bytes(sample)
    if data is None:
        raise DataError(f"{where}: no .jpg or .png image")
    try:
        meta = _meta(sample)
    except ValueError as e:
        raise DataError(f"{where}: bad json metadata ({e})") from None
    recorded = meta.get("crc32")
    if recorded is not None and zlib.crc32(data) != recorded:
        raise DataError(f"{where}: corrupt: the image's bytes do not match the crc32 in its json")
    return data, meta, where


def decode_clip(sample: dict) -> torch.Tensor:
    """A WebDataset sample -> uint8 clip [3, T, S, S] (a view into the decoded image; T and S from the
    image's shape, checked against the json). Raises DataError naming the shard and key if the image is
    missing, does not decode, or is not a stack of square frames."""
    data, meta, where = image_and_meta(sample)
    img = decode_image(data)
    if img is None:
        raise DataError(f"{where}: image does not decode")
    t, s = _check_shape(img.shape[1], img.shape[0], meta, where)
    return torch.from_numpy(img).view(t, s, s, 3).permute(3, 0, 1, 2)


def sample_shape(sample: dict) -> tuple[int, int]:
    """(T, S) from the json (or, without one, the image header: ~30 us), without decoding the pixels;
    DataError as `image_and_meta`, or naming the sample if its header does not read."""
    data, meta, where = image_and_meta(sample)
    t, s = meta.get("frames"), meta.get("size")
    if isinstance(t, int) and isinstance(s, int) and t > 0 and s > 0:
        return t, s  # trusted until decoding, which checks the real shape
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as e:  # PIL raises many types for garbage bytes
        raise DataError(f"{where}: image does not decode ({type(e).__name__})") from None
    return _check_shape(width, height, meta, where)


def _reason(exn: BaseException) -> str:
    text = str(exn.args[0]) if exn.args else ""
    text = text.split(" @ ")[0].splitlines()[0] if text else ""
    return f"{type(exn).__name__}: {text}"[:200] if text else type(exn).__name__


_BLOCK = 512
_END = bytes(_BLOCK)


class TarError(ValueError):
    """A damaged tar stream."""


class EmptyTarError(TarError):
    """A tar stream with no bytes at all (e.g. a zero-byte file): nothing lost, but nothing there."""


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    while len(data) < n:  # pipes and sockets may return less than asked
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256, for members over 8 GB
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b" \0") or b"0", 8)
    except ValueError:
        raise TarError("not a tar header") from None


def tar_members(stream) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file in a tar stream, in order.

    WebDataset's own iterator goes through Python's `tarfile`, which costs a third of the whole per-clip
    budget of the 1,000 clips/s goal (benchmarks/RESULTS.md, "Data loading"). This reads the
    same POSIX ustar/GNU/pax archives (as written by webdataset's TarWriter, GNU tar or Python's tarfile)
    directly, verifies every header checksum, and raises TarError on damage or a missing end marker
    (EmptyTarError when the stream holds no bytes at all).
    """
    long_name = None
    for headers_read in itertools.count():
        header = _read_exact(stream, _BLOCK)
        if header == _END:
            return
        if headers_read == 0 and not header:
            raise EmptyTarError("empty (0 bytes)")
        if len(header) < _BLOCK:
            raise TarError("truncated (no end-of-archive marker)" if not header else "truncated header")
        if _octal(header[148:156]) != sum(header) - sum(header[148:156]) + 8 * 32:
            raise TarError("bad header checksum")
        size, kind = _octal(header[124:136]), header[156:157]
        data = _read_exact(stream, size + (-size % _BLOCK))
        if len(data) < size:
            raise TarError("truncated member")
        data = data[:size]
        if kind in (b"0", b"\0", b"7"):
            name = header[:100].split(b"\0", 1)[0].decode()
            if header[257:262] == b"ustar" and header[345:346] != b"\0":
                name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
            yield long_name or name, data
            long_name = None
        elif kind == b"L":  # GNU long name of the next member
            long_name = data.split(b"\0", 1)[0].decode()
        elif kind in (b"x", b"g"):  # pax extended header: only a long path matters here
            for record in data.decode(errors="replace").splitlines():
                if " path=" in record:
                    long_name = record.split(" path=", 1)[1]
        # other kinds (folders, links, devices) carry no sample data


def _samples(members: Iterator[tuple[str, bytes]], url: str) -> Iterator[dict]:
    """Group consecutive members by key (the path up to the first dot of the file name, WebDataset's rule)."""
    sample: dict = {}
    for name, data in members:
        folder, _, base = name.rpartition("/")
        stem, dot, ext = base.partition(".")
        if not dot:
            continue
        key = f"{folder}/{stem}" if folder else stem
        if sample and sample["__key__"] != key:
            yield sample
            sample = {}
        if not sample:
            sample = {"__key__": key, "__url__": url}
        sample[ext.lower()] = data
    if sample:
        yield sample


def _opened(url: str, handler: Callable[[BaseException], bool]) -> list[dict]:
    """[{url, stream}] of a shard, opened with fsspec (s3://, ...: see storage.streamed_by_fsspec) or else
    WebDataset's URL opener; [] when it cannot be opened (`handler` is told why)."""
    if not streamed_by_fsspec(url):
        return list(url_opener([dict(url=url)], handler=handler))
    import fsspec

    try:
        return [dict(url=url, stream=fsspec.open(url, "rb").open())]
    except Exception as e:  # noqa: BLE001 - a driver's failure to open one shard is a warning, not the end
        handler(e)
        return []


def read_shard(url: str) -> Iterator[dict]:
    """The raw samples of one shard (dicts of bytes keyed by extension, plus __key__ and __url__), opened with
    WebDataset's URL opener (files, http(s), pipe:) or fsspec (s3://, ...). A shard that cannot be opened or
    read to the end gives the samples before the damage and one warning."""
    warned = []

    def handler(exn: BaseException) -> bool:
        if not warned:
            warned.append(True)
            warn(f"{url}: skipped: the shard is empty (0 bytes)" if isinstance(exn, EmptyTarError)
                 else f"{url}: skipped the rest of this shard ({_reason(exn)})")
        return True  # go on with the next shard

    streams = _opened(url, handler)
    try:
        for s in streams:
            samples = _samples(tar_members(s["stream"]), url)
            while True:
                try:
                    sample = next(samples)
                except StopIteration:
                    break
                except (TarError, OSError, UnicodeDecodeError) as e:
                    handler(e)
                    break
                yield sample
    finally:
        for s in streams:
            try:
                s["stream"].close()
            except Exception as e:  # a pipe: command that failed
                handler(e)


__all__: list[str] = ["EmptyTarError", "TarError", "tar_members", "decode_clip",
                      "decode_image", "encode_clip", "image_and_meta", "image_bytes", "is_shard_source",
                      "read_shard", "resolve_shards", "sample_name", "sample_shape", "write_shard"]
