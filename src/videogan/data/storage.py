"""Where `videogan prepare` writes: a folder that is a local path or an fsspec URL (s3://bucket/clips/,
gs://..., ...), with just the operations prepare needs, each done so that no reader ever sees part of a
file.

- Local: the file is written to a hidden temporary name beside its own and renamed over it, durably
  (media.atomic_path), as before object storage existed.
- Object stores (S3 and S3-compatible servers, GCS, Azure Blob): an object becomes visible only once its
  upload is complete (a single PUT, or a multipart upload's final request), so each file is made in a local
  temporary folder and uploaded whole to its own name: a reader sees the old object or the new one, never a
  part.
- Other fsspec file systems (sftp, ...): uploaded to a hidden temporary name (`.STEM.XXXXXXXX.SUFFIX`, the
  local pattern, so an interrupted run's leftovers are recognised and removed the same way), then moved.

Credentials and endpoints come from where each file system's own library looks. For s3:// (s3fs on botocore):
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials, an instance role), and for an
S3-compatible server (MinIO, Ceph, ...) AWS_ENDPOINT_URL or fsspec's FSSPEC_S3_ENDPOINT_URL (fsspec reads its
FSSPEC_<PROTOCOL>_<OPTION> variables and ~/.config/fsspec/ when it is imported).
"""
from __future__ import annotations

import os
import posixpath
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..media import make_folder_durably
from .decode import DataError
from .inputs import is_url

T = TypeVar("T")

# Protocols whose uploads appear whole or not at all: no temporary name, no move (which they do as a copy).
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
# The pip extra that brings each protocol's driver, for the message when it is missing.
EXTRAS = {"s3": "cloud", "s3a": "cloud"}


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def file_system(url: str):
    """(fsspec file system, path within it) of a URL; DataError in one line when its driver is not installed
    (s3:// needs s3fs) or the protocol is unknown."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        extra = EXTRAS.get(protocol(url))
        how = f"pip install 'videogan[{extra}]'" if extra else "install the fsspec driver for it"
        raise DataError(f"{url}: {protocol(url)}:// needs a driver that is not installed: {how}") from None
    except ValueError as e:
        raise DataError(f"{url}: {e}") from None


def _as_os_error(error: Exception) -> OSError:
    """A driver's exception as an OSError (what prepare turns into one line that keeps the written shards):
    s3fs translates most of botocore's errors, not all (an unreachable endpoint, say)."""
    if isinstance(error, OSError):
        return error
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return OSError(f"{type(error).__name__}: {first}")


def _unreadable(where: str, what: str, error: Exception) -> DataError:
    """A remote read's failure (no such bucket is not one: nothing is there yet) as one line: an unreachable
    endpoint, refused credentials, ..."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(_as_os_error(error))
    return DataError(f"{where}: cannot {what} ({reason}); check the URL, the credentials and the endpoint "
                     "(AWS_ENDPOINT_URL for an S3-compatible server)")


def _hidden_name(name: str) -> str:
    """A temporary name for `name` as media.atomic_path (mkstemp) makes them: `.STEM.XXXXXXXX.SUFFIX`."""
    stem, suffix = os.path.splitext(name)
    return f".{stem}.{secrets.token_hex(4)}{suffix}"


class Folder:
    """A folder of prepare's outputs: a local path, or an fsspec URL. `folder / name` is the file's path
    (local) or URL, as messages name it."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)
        self.local = not is_url(self.location)
        if self.local:
            self.path = Path(self.location)
        else:
            self.fs, root = file_system(self.location)
            self.root = root.rstrip("/")
            self.atomic_put = protocol(self.location) in OBJECT_STORES

    def __str__(self) -> str:
        return self.location

    def __truediv__(self, name: str) -> Path | str:
        return self.path / name if self.local else f"{self.location.rstrip('/')}/{name}"

    def _remote(self, name: str) -> str:
        return f"{self.root}/{name}"

    def make(self) -> None:
        """Create the folder (an object store has no folders: its objects' names make them)."""
        if self.local:
            make_folder_durably(self.path)
        elif not self.atomic_put:
            try:
                self.fs.makedirs(self.root, exist_ok=True)
            except Exception as e:  # noqa: BLE001 - any driver's failure, as one line
                raise _as_os_error(e) from None

    def write(self, name: str, write: Callable[[Path], T]) -> T:
        """`write(path)` makes the file `name` at the local `path` it is given; returns what it returns.
        Local: `path` is the file's own, and `write` must be atomic itself (media.atomic_path, as
        media.write_json and shards.write_shard are). Elsewhere: `path` is in a local temporary folder, and
        the file is uploaded whole once `write` succeeds (see the module's docstring)."""
        if self.local:
            return write(self.path / name)
        with tempfile.TemporaryDirectory(prefix="videogan-upload-") as staging:
            made = Path(staging) / name
            result = write(made)
            self._upload(made, name)
        return result

    def _upload(self, made: Path, name: str) -> None:
        target = self._remote(name)
        try:
            if self.atomic_put:
                self.fs.put_file(str(made), target)
                return
            hidden = self._remote(_hidden_name(name))
            try:
                self.fs.put_file(str(made), hidden)
                self.fs.mv(hidden, target)
            finally:
                if self.fs.exists(hidden):
                    self.fs.rm_file(hidden)
        except Exception as e:  # noqa: BLE001 - any driver's failure, as one line
            raise _as_os_error(e) from None

    def read_bytes(self, name: str) -> bytes | None:
        """The file's bytes; None when there is none. A local file that cannot be read raises OSError; a
        remote one DataError in one line."""
        try:
            if self.local:
                return (self.path / name).read_bytes()
            return self.fs.cat_file(self._remote(name))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except Exception as e:
            if self.local:
                raise
            raise _unreadable(str(self / name), "read", e) from None

    def glob(self, pattern: str) -> list[str]:
        """Names of the files in the folder (not below it) that match `pattern`, sorted; hidden names
        included, as pathlib's glob does. Listings are never taken from a cache: other machines write here."""
        if self.local:
            if not self.path.is_dir():
                return []
            return sorted(p.name for p in self.path.glob(pattern) if p.is_file())
        try:
            self.fs.invalidate_cache(self.root)
            found = self.fs.glob(self._remote(pattern), detail=True)
        except FileNotFoundError:  # no such bucket or folder: nothing written yet
            return []
        except Exception as e:  # noqa: BLE001 - any driver's failure, as one line
            raise _unreadable(self.location, "list", e) from None
        return sorted(posixpath.basename(path) for path, info in found.items() if info.get("type") == "file")

    def remove(self, name: str) -> None:
        """Delete the file if it is there."""
        try:
            if self.local:
                (self.path / name).unlink(missing_ok=True)
            else:
                self.fs.rm_file(self._remote(name))
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001 - any driver's failure, as one line
            raise _as_os_error(e) from None


def streamed_by_fsspec(url: str) -> bool:
    """Whether shards at `url` are found and read through fsspec: a URL whose scheme WebDataset's own opener
    does not know (s3://, az://, memory://, ...). http(s)://, gs:// (gsutil), pipe: and file: stay with it."""
    if not is_url(url):
        return False
    from webdataset.gopen import gopen_schemes

    return protocol(url) not in gopen_schemes and protocol(url) != "file"


def output_location(out: str | os.PathLike) -> Path | str:
    """`--out` as prepare keeps it: a Path for a local folder, the URL itself otherwise (a Path would fold
    s3://bucket into s3:/bucket)."""
    return str(out) if is_url(str(out)) else Path(out)


__all__ = ["EXTRAS", "OBJECT_STORES", "Folder", "file_system", "output_location", "protocol",
           "streamed_by_fsspec"]
