"""Reading an untrusted clip's headers in a child process bounded in time and memory, so a hostile file can
neither hang nor bloat the process that asked (the API): `probe(data, ...)`; the child is this module's main."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from nst_shared.clip_info import ClipInfo
from nst_shared.errors import UnreadableVideo, UnsupportedImageFormat

_PROBE_FAILED = 3  # the child's exit status when the file is not a readable clip (why, as JSON on stdout)


class ProbeRefused(UnreadableVideo):
    """Raised when the probe ran past its time or memory: the clip is refused without being read further."""

    code = "video_probe_refused"


def probe(data: bytes, *, timeout_s: float, memory_bytes: int) -> ClipInfo:
    """The headers of the clip `data`, read by a child process limited to `timeout_s` seconds (wall clock and
    CPU) and `memory_bytes` of address space; UnreadableVideo (or ProbeRefused) otherwise."""
    with tempfile.TemporaryDirectory(prefix="nst-probe-") as folder:
        path = Path(folder) / "clip"
        path.write_bytes(data)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "nst_shared.video_probe", str(path), str(memory_bytes), str(timeout_s)],
                capture_output=True,
                timeout=timeout_s,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProbeRefused(f"reading the clip's headers took more than {timeout_s:g} s") from None
    if done.returncode == _PROBE_FAILED:
        error = json.loads(done.stdout)
        refused = UnsupportedImageFormat if error["code"] == UnsupportedImageFormat.code else UnreadableVideo
        raise refused(error["message"])
    if done.returncode != 0:  # killed by its limits, or out of memory
        raise ProbeRefused(f"reading the clip's headers needed more than {memory_bytes // 2**20} MB or crashed")
    return ClipInfo.from_dict(json.loads(done.stdout))


def _main(path: str, memory_bytes: int, timeout_s: float) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    cpu_s = max(1, int(timeout_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    from nst_shared.video_io import probe_file  # FFmpeg loads under the limits

    try:
        info = probe_file(path)
    except (UnreadableVideo, UnsupportedImageFormat) as exc:
        print(json.dumps({"code": exc.code, "message": str(exc)}))
        return _PROBE_FAILED
    print(json.dumps(info.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
