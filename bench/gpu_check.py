"""The GPU check in one command (issue 13): every step in a process of its own, within one time budget, each
step's failure or timeout recorded without stopping the others, everything written into one folder:

    bench/gpu_check.sh OUT [--device cuda] [--tiny] [--budget-s 190] [--only engine service]
                           [--extra 'NAME=COMMAND' ...]

It refuses, running nothing, when this Python cannot import what the steps import (the wheels bench/gpu_wheels.sh
packs). Steps, most important first, each a bench script with a limit; the first five hold the numbers issue 27
asks for and fit the budget with the card warm, the later ones get what is left or are skipped: pytest (tests/gpu,
marked gpu), engine (engine_bench.py: 512 px warm and its 300-step time, 1024 px against the bf16 peak, peak
memory against the memory plan), objective (engine_bench.py: time to the plain way's 300-step value of the
engine's objective at 512 px), service (service_bench.py --jobs: `nst up` and three jobs), largest (4096 px),
gpu (gpu_bench.py: syncs and launches a step, cudnn.benchmark on and off, CUDA graphs), engine_more (2048 px,
bf16 and fp32), largest_more (5120 to 8192 px), then each --extra (a shell command run with DEVICE, OUT and
PYTHON set). `--tiny` shrinks every size and count for the dry run on a CPU (tests/bench/test_gpu_check.py).

OUT gets summary.txt (every step's status and table), results.json (all numbers), steps.log (all output),
pytest.xml, objective.png and service.png: six files, within what a device run brings back.
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "--- table ---"


# What the steps import: the packages and bench modules they run. boto3 serves S3 storage only, when configured.
RUN_SOURCES = "service worker nst_core nst_shared nst_cli bench tests/gpu tests/cli/stack.py tests/conftest.py"
OPTIONAL_IMPORTS = {"boto3", "botocore"}


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


def missing_imports() -> list[str]:
    return sorted(name for name in needed_imports() if importlib.util.find_spec(name) is None)


@dataclass
class Step:
    """One step: a command, the most seconds it may take, and where its numbers land (a JSON file)."""

    name: str
    max_s: float
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    json_name: str | None = None


def plan(args: argparse.Namespace, out: Path) -> list[Step]:
    """The steps in order of importance, each a bench script with its --json; --tiny for the CPU dry run."""
    py, device, tiny = sys.executable, args.device, args.tiny

    def bench(step: str, script: str, real: str, dry: str, max_s: float) -> Step:
        more = (dry if tiny else real).split()
        command = [py, f"bench/{script}", *more, "--device", device, "--json", str(out / f"{step}.json")]
        return Step(step, max_s, command, json_name=f"{step}.json")

    pytest = f"-m pytest -m gpu tests/gpu -q -x -rfEs -p no:cacheprovider --junitxml={out / 'pytest.xml'} -o addopts="
    picture = {name: f"--picture {out / name}.png" for name in ("objective", "service")}
    # Seconds each: the first five hold the numbers that matter (about 175 s with the card warm); the rest get
    # what the budget leaves, and are skipped when it is spent.
    steps = [
        Step("pytest", 50, [py, *pytest.split(), *(["-k", "not bf16"] if tiny else [])], {"GPU_TEST_DEVICE": device}),
        bench(
            "engine",
            "engine_bench.py",
            "iteration --sizes 512 1024 --precisions bf16 --iterations 15",
            "iteration --sizes 64 --precisions fp32 --iterations 2 --matmul-n 256",
            40,
        ),
        bench(
            "objective",
            "engine_bench.py",
            f"objective --size 512 --steps 300 --runs 1:auto 3:auto {picture['objective']}",
            f"objective --size 64 --steps 4 --runs 1:fp32 {picture['objective']}",
            35,
        ),
        bench(
            "service",
            "service_bench.py",
            f"--jobs 3 {picture['service']}",
            f"--jobs 2 --max-size 64 --steps 3 {picture['service']}",
            40,
        ),
        bench("largest", "engine_bench.py", "largest --sizes 4096", "largest --sizes 64", 20),
        bench("gpu", "gpu_bench.py", "--size 512 --steps 50", "--size 48 --steps 4 --precision fp32", 25),
        bench(
            "engine_more",
            "engine_bench.py",
            "iteration --sizes 2048 --precisions bf16 fp32 --iterations 5",
            "iteration --sizes 80 --precisions fp32 --iterations 2 --matmul-n 256",
            45,
        ),
        bench("largest_more", "engine_bench.py", "largest --sizes 5120 6144 8192", "largest --sizes 80", 40),
    ]
    # More rows: --extra 'NAME=COMMAND', run by bash with DEVICE, OUT and PYTHON set, e.g. the engine's print-size
    # bench: --extra 'print=$PYTHON bench/print_bench.py rows --device $DEVICE --sizes 4096 8192'.
    for extra in args.extra:
        name, _, command = extra.partition("=")
        steps.append(
            Step(name, args.extra_max_s, ["bash", "-c", command], env={"DEVICE": device, "OUT": str(out), "PYTHON": py})
        )
    if tiny:  # the dry run's tiny sizes on a shared CPU are slower than the real ones on the card
        for step in steps:
            step.max_s *= 3
    return [step for step in steps if not args.only or step.name in args.only]


def run_step(step: Step, timeout_s: float, log) -> dict:
    """Run one step in its own process group (so a timeout ends its children too: nst up, workers, Redis)."""
    log.write(f"\n===== {step.name}: {shlex.join(step.command)} (at most {timeout_s:.0f} s)\n")
    log.flush()
    started = time.monotonic()
    process = subprocess.Popen(
        step.command,
        cwd=ROOT,
        env={**os.environ, **step.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
        status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        _end_group(process)
        output, _ = process.communicate()
        status = f"timed out after {timeout_s:.0f} s"
    elapsed = time.monotonic() - started
    log.write(output)
    log.write(f"\n===== {step.name}: {status} in {elapsed:.1f} s\n")
    log.flush()
    lines = output.splitlines()
    table = lines[lines.index(TABLE) + 1 :] if TABLE in lines else [line for line in lines[-12:] if line.strip()]
    return {"status": status, "seconds": round(elapsed, 1), "table": table}


def _end_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        os.killpg(process.pid, signal.SIGKILL)


def machine() -> dict:
    """The card, driver and torch as this machine reports them."""
    found = {
        "host": platform.node(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    probe = (
        "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
        "'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else None}))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        found.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        found["torch"] = "unknown"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        found["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        found["nvidia_smi"] = None
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
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    missing = missing_imports()
    if missing:  # every step would fail on its imports: refuse before spending the lease
        refusal = (
            f"gpu_check: REFUSED, nothing ran: {sys.executable} cannot import {', '.join(missing)}. Pack the wheels "
            "here with bench/gpu_wheels.sh and carry .gpu-trip in the run call (bench/README.md)."
        )
        print("\n" + "!" * 100 + f"\n{refusal}\n" + "!" * 100, file=sys.stderr, flush=True)
        (out / "summary.txt").write_text(refusal + "\n")
        return 3
    results = {"machine": machine(), "device": args.device, "tiny": args.tiny, "budget_s": args.budget_s, "steps": {}}
    deadline = time.monotonic() + args.budget_s  # the steps' budget, from after the machine's probe
    with open(out / "steps.log", "w") as log:
        for step in plan(args, out):
            left = deadline - time.monotonic()
            if left < 10:
                results["steps"][step.name] = {"status": "skipped: the time budget is spent", "seconds": 0, "table": []}
                continue
            results["steps"][step.name] = outcome = run_step(step, min(step.max_s, left), log)
            if step.json_name and (out / step.json_name).is_file():
                outcome["result"] = json.loads((out / step.json_name).read_text())
                (out / step.json_name).unlink()  # folded into results.json: fewer files to bring back
            print(f"{step.name}: {outcome['status']} in {outcome['seconds']} s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    summary = [
        f"GPU check, {results['machine']['date']} on {results['machine']['host']}: "
        f"{results['machine'].get('gpu') or args.device}, torch {results['machine'].get('torch')} "
        f"(CUDA {results['machine'].get('cuda')}), Python {results['machine']['python']}",
        f"nvidia-smi: {results['machine'].get('nvidia_smi')}",
        "",
    ]
    for name, outcome in results["steps"].items():
        summary.append(f"## {name}: {outcome['status']} ({outcome['seconds']} s)")
        summary += outcome["table"] + [""]
    (out / "summary.txt").write_text("\n".join(summary))
    print("\n".join(summary))
    return 0 if all(o["status"] == "ok" for o in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
