"""Where job files live, addressed by (job id, name): a folder shared by the API and the workers, or an
S3-compatible bucket (`NST_STORAGE_URL=s3://bucket/prefix`) for workers on other machines."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from nst_shared.settings import Settings

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


# A full disk or quota, or a filesystem that takes no writes: the storage's outage, not a bug.
_REFUSED_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class StorageRefused(Exception):
    """Raised by `put` when the storage refuses a write that it may take later: a full disk, quota or bucket, or
    a storage that takes no writes now. `full` says whether it is out of room."""

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full


# What a download reads of a file at once: a print-size PNG (100-200 MB) is never held whole.
CHUNK_BYTES = 1 << 20


class StoredFile(Protocol):
    """A file opened for reading in parts: its size now, and the bytes [start, end) as chunks."""

    size: int

    def chunks(self, start: int, end: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Storage(Protocol):
    """What the API, the workers and the sweeper need of a storage backend."""

    def put(self, job_id: str, name: str, data: bytes) -> None: ...

    def get(self, job_id: str, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def open(self, job_id: str, name: str) -> StoredFile | None:
        """The file to read in parts (a download), or None when it does not exist."""

    def exists(self, job_id: str, name: str) -> bool: ...

    def delete_job(self, job_id: str) -> None:
        """Remove every file of the job (nothing happens when there is none)."""

    def job_ids(self) -> list[str]:
        """Ids of the jobs that have files."""

    def modified_at(self, job_id: str) -> float | None:
        """Unix time the job's files last changed (None when it has none): the sweeper's age of orphans."""


def check_key(job_id: str, name: str) -> None:
    """Raises ValueError for a job id or name that could escape its job's folder or prefix."""
    if not (_SAFE.match(job_id) and _SAFE.match(name)) or ".." in (job_id, name):
        raise ValueError(f"unsafe storage key {job_id!r}/{name!r}")


def open_storage(settings: Settings) -> Storage:
    """The backend the settings name: S3 when `storage_url` is s3://..., else the folder `storage_dir`."""
    if settings.storage_url.startswith("s3://"):
        from nst_shared.s3_storage import S3Storage  # boto3 is an optional extra

        return S3Storage.from_url(
            settings.storage_url, endpoint_url=settings.s3_endpoint_url or None, region=settings.s3_region or None
        )
    if settings.storage_url:
        raise ValueError(f"NST_STORAGE_URL: only s3://bucket/prefix is understood, not {settings.storage_url!r}")
    return LocalStorage(settings.storage_dir)


class LocalStorage:
    """Files under `root/<job id>/<name>`, written atomically so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        check_key(job_id, name)
        return self.root / job_id / name

    def put(self, job_id: str, name: str, data: bytes) -> None:
        target = self.path(job_id, name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except OSError as exc:
            raise _refused(exc) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise _refused(exc) from exc

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.path(job_id, name).read_bytes()
        except FileNotFoundError:
            return None

    def open(self, job_id: str, name: str) -> StoredFile | None:
        try:
            return LocalFile(self.path(job_id, name).open("rb"))
        except FileNotFoundError:
            return None

    def exists(self, job_id: str, name: str) -> bool:
        return self.path(job_id, name).is_file()

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.path(job_id, "x").parent, ignore_errors=True)

    def job_ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_dir() and _SAFE.match(p.name)]

    def modified_at(self, job_id: str) -> float | None:
        try:
            return self.path(job_id, "x").parent.stat().st_mtime
        except FileNotFoundError:
            return None


class LocalFile:
    """An open file: a file replaced or deleted meanwhile is still read whole, as it was when opened."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = os.fstat(handle.fileno()).st_size

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        self.handle.seek(start)
        left = end - start
        while left > 0 and (chunk := self.handle.read(min(CHUNK_BYTES, left))):
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.handle.close()


def _refused(exc: OSError) -> OSError | StorageRefused:
    """`exc` as a StorageRefused when it says the storage takes no writes now; other errors stay what they are."""
    if exc.errno in _REFUSED_WRITE:
        return StorageRefused(f"the storage refused a write: {exc.strerror}", full=exc.errno != errno.EROFS)
    return exc
