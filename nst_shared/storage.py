"""Where job files live, addressed by (job id, name): a folder shared by the API and the workers, or an
S3-compatible bucket (`NST_STORAGE_URL=s3://bucket/prefix`) for workers on other machines."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from nst_shared.settings import Settings

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Storage(Protocol):
    """What the API, the workers and the sweeper need of a storage backend."""

    def put(self, job_id: str, name: str, data: bytes) -> None: ...

    def get(self, job_id: str, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

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
            settings.storage_url,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:  # a full disk, a lost mount: no half-written file is left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.path(job_id, name).read_bytes()
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
