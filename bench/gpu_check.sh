#!/usr/bin/env bash
# The GPU check (bench/README.md): installs the wheels bench/gpu_wheels.sh packed into .gpu-trip/ (when there), then
# runs bench/gpu_check.py from this source tree on the machine's torch; PYTHON picks the interpreter (default python3).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: bench/gpu_check.sh OUT_DIR [bench/gpu_check.py options]}"
python="${PYTHON:-python3}"
# The wheels are for Python 3.12 (the GPU machine's): another interpreter (a dry run here) runs without them.
if [ -d "$root/.gpu-trip/wheels" ] && "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    site="${TMPDIR:-/tmp}/nst-gpu-site"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$root"/.gpu-trip/wheels/*.whl || { echo "gpu_check: the carried wheels did not install" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$python" "$root/bench/gpu_check.py" "$@"
