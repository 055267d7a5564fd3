"""Where job files live: a folder shared by the API and the workers, addressed by (job id, name)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class LocalStorage:
    """Files under `root/<job id>/<name>`, written atomically so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        if not (_SAFE.match(job_id) and _SAFE.match(name)) or ".." in (job_id, name):
            raise ValueError(f"unsafe storage key {job_id!r}/{name!r}")
        return self.root / job_id / name

    def put(self, job_id: str, name: str, data: bytes) -> None:
        target = self.path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)

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
