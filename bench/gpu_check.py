"""The GPU check in one command (issues 13 and 27; bench/README.md lists the steps): each step in a process of its own
within one budget, a failure or timeout recorded, all in one folder; it refuses when this Python lacks their imports.

    bench/gpu_check.sh OUT [--device cuda] [--tiny] [--budget-s 190] [--only engine service] [--extra 'NAME=COMMAND']
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "--- table ---"

# What the steps import. Optional: boto3 (S3 storage), av and cv2 (clips only; 100 MB of wheels, past the trip).
RUN_SOURCES = "service worker nst_core nst_shared nst_cli bench tests/gpu tests/cli/stack.py tests/conftest.py"
OPTIONAL_IMPORTS = {"boto3", "botocore", "av", "cv2"}
# After pytest, most important first (bench/README.md says why): (most seconds, the script and its arguments).
BENCHES = {
    "engine": (40, "engine_bench.py iteration --sizes 512 1024 --precisions bf16 --iterations 15"),
    "objective": (35, "engine_bench.py objective --size 512 --steps 300 --runs 1:auto 3:auto"),
    "service": (40, "service_bench.py --jobs 3"),
    "largest": (20, "engine_bench.py largest --sizes 4096"),
    "gpu": (25, "gpu_bench.py --size 512 --steps 50"),
    "engine_more": (45, "engine_bench.py iteration --sizes 2048 --precisions bf16 fp32 --iterations 5"),
    "largest_more": (40, "engine_bench.py largest --sizes 5120 6144 8192"),
}
TINY = {  # --tiny: the same scripts at sizes for the dry run on a CPU (tests/bench/test_gpu_check.py)
    "engine": "engine_bench.py iteration --sizes 64 --precisions fp32 --iterations 2 --matmul-n 256",
    "objective": "engine_bench.py objective --size 64 --steps 4 --runs 1:fp32",
    "service": "service_bench.py --jobs 2 --max-size 64 --steps 3",
    "largest": "engine_bench.py largest --sizes 64",
    "gpu": "gpu_bench.py --size 48 --steps 4 --precision fp32",
    "engine_more": "engine_bench.py iteration --sizes 80 --precisions fp32 --iterations 2 --matmul-n 256",
    "largest_more": "engine_bench.py largest --sizes 80",
}
PROBE = "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpu': \
torch.cuda.get_device_name() if torch.cuda.is_available() else None}))"
SMI = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]


def needed_imports() -> set[str]:
    """The top-level modules outside the standard library and this repository that the steps import."""
    ours = {p.name for p in ROOT.iterdir() if p.is_dir()} | {p.stem for p in ROOT.glob("bench/*.py")}
    found: set[str] = set()
    for source in RUN_SOURCES.split():
        for path in [ROOT / source] if source.endswith(".py") else (ROOT / source).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in ours} - OPTIONAL_IMPORTS


def plan(args: argparse.Namespace, out: Path) -> list[tuple]:
    """(name, most seconds, command, environment) of pytest, each bench with its --json (--picture: the two that
    paint), then each --extra, run by bash with DEVICE, OUT and PYTHON set (bench/README.md has an example)."""
    py, device, slower = sys.executable, args.device, 3 if args.tiny else 1  # tiny sizes on a shared CPU are slower
    pytest = f"-m pytest -m gpu tests/gpu -q -x -rfEs -p no:cacheprovider --junitxml={out / 'pytest.xml'} -o addopts="
    tiny = ["-k", "not bf16"] if args.tiny else []
    steps = [("pytest", 50 * slower, [py, *pytest.split(), *tiny], {"GPU_TEST_DEVICE": device})]
    for name, (max_s, real) in BENCHES.items():
        script, *more = (TINY[name] if args.tiny else real).split()
        more += ["--picture", str(out / f"{name}.png")] if name in ("objective", "service") else []
        command = [py, f"bench/{script}", *more, "--device", device, "--json", str(out / f"{name}.json")]
        steps.append((name, max_s * slower, command, {}))
    env = {"DEVICE": device, "OUT": str(out), "PYTHON": py}
    for name, _, command in (extra.partition("=") for extra in args.extra):
        steps.append((name, args.extra_max_s * slower, ["bash", "-c", command], env))
    return [step for step in steps if not args.only or step[0] in args.only]


def run_step(name: str, command: list[str], env: dict, timeout_s: float, log) -> dict:
    """Run one step in its own process group (so a timeout ends its children too: nst up, workers, Redis)."""
    log.write(f"\n===== {name}: {shlex.join(command)} (at most {timeout_s:.0f} s)\n")
    started = time.monotonic()
    output = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, start_new_session=True, **output)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = f"timed out after {timeout_s:.0f} s"
    elapsed = time.monotonic() - started
    log.write(f"{output}\n===== {name}: {status} in {elapsed:.1f} s\n")
    lines = output.splitlines()
    table = lines[lines.index(TABLE) + 1 :] if TABLE in lines else [line for line in lines[-12:] if line.strip()]
    return {"status": status, "seconds": round(elapsed, 1), "table": table}


def machine() -> dict:
    """The card, driver and torch as this machine reports them."""
    found = {"host": platform.node(), "python": platform.python_version(), "date": time.strftime("%F %T %Z")}
    for key, command in (("torch", [sys.executable, "-c", PROBE]), ("nvidia_smi", SMI)):
        try:
            answer = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()
            found.update(json.loads(answer.splitlines()[-1]) if key == "torch" else {key: answer})
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            found[key] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder every file goes to")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and counts (the dry run on a CPU)")
    parser.add_argument("--budget-s", type=float, default=190, help="all steps together (default 190 s)")
    parser.add_argument("--only", nargs="+", help="run only these steps")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=COMMAND", help="one more step")
    parser.add_argument("--extra-max-s", type=float, default=90)
    args = parser.parse_args(argv)
    (out := args.out.resolve()).mkdir(parents=True, exist_ok=True)
    missing = sorted(name for name in needed_imports() if importlib.util.find_spec(name) is None)
    if missing:  # every step would fail on its imports: refuse before spending the lease
        refusal = f"gpu_check: REFUSED, nothing ran: {sys.executable} cannot import {', '.join(missing)}. Pack "
        refusal += "the wheels here with bench/gpu_wheels.sh and carry .gpu-trip in the run call (bench/README.md)."
        print("\n" + "!" * 100 + f"\n{refusal}\n" + "!" * 100, file=sys.stderr, flush=True)
        (out / "summary.txt").write_text(refusal + "\n")
        return 3
    results = {"machine": machine(), "device": args.device, "tiny": args.tiny, "budget_s": args.budget_s, "steps": {}}
    deadline = time.monotonic() + args.budget_s  # the steps' budget, from after the machine's probe
    with open(out / "steps.log", "w", buffering=1) as log:
        for name, max_s, command, env in plan(args, out):
            left = deadline - time.monotonic()
            if left < 10:
                results["steps"][name] = {"status": "skipped: the time budget is spent", "seconds": 0, "table": []}
                continue
            results["steps"][name] = outcome = run_step(name, command, env, min(max_s, left), log)
            if (found := out / f"{name}.json").is_file():  # folded into results.json: fewer files to bring back
                outcome["result"] = json.loads(found.read_text())
                found.unlink()
            print(f"{name}: {outcome['status']} in {outcome['seconds']} s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    m = results["machine"]
    summary = [f"GPU check, {m['date']} on {m['host']}: {m.get('gpu') or args.device}, torch {m.get('torch')}"]
    summary += [f"(CUDA {m.get('cuda')}), Python {m['python']}, nvidia-smi: {m.get('nvidia_smi')}", ""]
    for name, outcome in results["steps"].items():
        summary.append(f"## {name}: {outcome['status']} ({outcome['seconds']} s)")
        summary += outcome["table"] + [""]
    (out / "summary.txt").write_text("\n".join(summary))
    print("\n".join(summary))
    return 0 if all(o["status"] == "ok" for o in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
