"""The GPU check in one command (issue 13): every step in a process of its own, within one time budget, each
step's failure or timeout recorded without stopping the others, everything written into one folder:

    bench/gpu_check.sh OUT [--device cuda] [--tiny] [--budget-s 270] [--only engine service]
                           [--extra 'NAME=COMMAND' ...]

Steps: pytest (tests/gpu, marked gpu), engine (bench/gpu_bench.py engine: 512/1024/2048 px), objective (time
to the seed's 300-step objective at 512 px, against the seed's algorithm), service (`nst up` and five jobs by
curl), largest (the largest single-scale size that fits), then each --extra (a shell command run with DEVICE,
OUT and PYTHON set: the hook for more rows, e.g. the print-size bench at 4096 and 8192 px). `--tiny` shrinks
every size and count for the dry run on a CPU (tests/bench/test_gpu_check.py).

OUT gets summary.txt (every step's status and table), results.json (all numbers), steps.log (all output),
pytest.xml, objective.png and service.png: six files, within what a device run brings back.
"""

from __future__ import annotations

import argparse
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
BENCH = str(ROOT / "bench" / "gpu_bench.py")
TABLE = "--- table ---"


@dataclass
class Step:
    """One step: a command, the most seconds it may take, and where its numbers land (a JSON file)."""

    name: str
    max_s: float
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    json_name: str | None = None


def plan(args: argparse.Namespace, out: Path) -> list[Step]:
    """The steps in order of importance; --tiny for the CPU dry run."""
    py, device, tiny = sys.executable, args.device, args.tiny

    def bench(name: str, *more: str) -> list[str]:
        return [py, BENCH, name, "--device", device, "--json", str(out / f"{name}.json"), *more]

    steps = [
        Step(
            "pytest",
            100,
            [
                py,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "tests/gpu",
                "-q",
                "-s",
                "-rfEs",
                "-p",
                "no:cacheprovider",
                f"--junitxml={out / 'pytest.xml'}",
                "-o",
                "addopts=",
                *(["-k", "not bf16"] if tiny else []),
            ],
            env={"GPU_TEST_DEVICE": device},
        ),
        Step(
            "engine",
            80,
            bench(
                "engine",
                *(
                    [
                        "--sizes",
                        "64",
                        "--iterations",
                        "2",
                        "--warmup",
                        "1",
                        "--count-steps",
                        "1",
                        "--precisions",
                        "fp32",
                        "--matmul-n",
                        "256",
                    ]
                    if tiny
                    else ["--sizes", "512", "1024", "2048"]
                ),
            ),
            json_name="engine.json",
        ),
        Step(
            "objective",
            60,
            bench(
                "objective",
                "--picture",
                str(out / "objective.png"),
                *(["--size", "48", "--seed-steps", "4"] if tiny else ["--size", "512", "--seed-steps", "300"]),
            ),
            json_name="objective.json",
        ),
        Step(
            "service",
            60,
            bench(
                "service",
                "--picture",
                str(out / "service.png"),
                *(["--jobs", "2", "--max-size", "64", "--steps", "3"] if tiny else ["--jobs", "5"]),
            ),
            json_name="service.json",
        ),
        Step(
            "largest",
            45,
            bench("largest", "--sizes", *(["64"] if tiny else ["3072", "4096", "5120", "6144", "7168", "8192"])),
            json_name="largest.json",
        ),
    ]
    # More rows: --extra 'NAME=COMMAND', run by bash with DEVICE, OUT and PYTHON set, e.g. the engine's print-size
    # bench: --extra 'print=$PYTHON bench/print_bench.py --device $DEVICE --sizes 4096 8192' (its name as it lands).
    for extra in args.extra:
        name, _, command = extra.partition("=")
        steps.append(
            Step(name, args.extra_max_s, ["bash", "-c", command], env={"DEVICE": device, "OUT": str(out), "PYTHON": py})
        )
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
    lines: list[str] = []
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
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


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
    parser.add_argument("--budget-s", type=float, default=270, help="all steps together (default 270 s)")
    parser.add_argument("--only", nargs="+", help="run only these steps")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=COMMAND", help="one more step")
    parser.add_argument("--extra-max-s", type=float, default=90)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    results = {"machine": machine(), "device": args.device, "tiny": args.tiny, "budget_s": args.budget_s, "steps": {}}
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
