"""bench/gpu_check.sh's plumbing, here on the CPU at tiny sizes: every step runs and lands in one folder as the
GPU machine will bring it back; a failing or slow step does not stop the others."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from PIL import Image

from tests.conftest import ROOT, make_image

# engine_more and largest_more run the scripts of engine and largest at other sizes: left out of the dry run.
STEPS = ["pytest", "engine", "objective", "service", "largest", "gpu"]


def test_dry_run_on_the_cpu_fills_the_folder(tmp_path):
    out = tmp_path / "out"
    for kind, name, seed in (("content", "tiger", 1), ("style", "starry", 2)):  # a clean clone has no shared/
        (tmp_path / "images" / kind).mkdir(parents=True)
        (tmp_path / "images" / kind / f"{name}.png").write_bytes(make_image(96, 80, seed=seed))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NST_", "GPU_TEST_"))},
        "PYTHON": sys.executable,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "BENCH_IMAGES": str(tmp_path / "images"),
    }
    run = subprocess.run(
        ["bash", "bench/gpu_check.sh", str(out), "--device", "cpu", "--tiny", "--budget-s", "800", "--only", *STEPS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # What a device run brings back: at most 8 plain files, named in letters, digits, '.', '_' and '-'.
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        ["summary.txt", "results.json", "steps.log", "pytest.xml", "objective.png", "service.png"]
    ), files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)
    results = json.loads((out / "results.json").read_text())
    assert list(results["steps"]) == STEPS and all(s["status"] == "ok" for s in results["steps"].values())
    steps = results["steps"]
    rows = [row for row in steps["engine"]["result"]["rows"] if "size" in row]
    assert rows and all(row["s_per_iter"] > 0 and row["gflop_per_iter"] > 0 for row in rows)
    assert steps["objective"]["result"]["plain_s"] > 0 and steps["objective"]["result"]["plain_objective"] > 0
    assert steps["gpu"]["result"]["per_step"]["launches"] >= 0 and "error" in steps["gpu"]["result"]["graphs"]["graph"]
    jobs = steps["service"]["result"]["jobs"]
    assert len(jobs) == 2 and all(job["ok"] and job["queue_pickup_s"] >= 0 for job in jobs)
    assert steps["largest"]["result"]["sizes"][0]["fits"]
    summary = (out / "summary.txt").read_text()
    assert all(f"## {name}: ok" in summary for name in STEPS) and "submit->PNG s" in summary
    suite = ElementTree.parse(out / "pytest.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 5 and int(suite.get("failures")) == int(suite.get("errors")) == 0
    for picture in ("objective.png", "service.png"):
        assert Image.open(out / picture).format == "PNG"


def test_a_failed_or_slow_step_does_not_stop_the_others(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "bench/gpu_check.py",
            str(out),
            "--device",
            "cpu",
            "--budget-s",
            "20",
            "--extra-max-s",
            "3",
            "--only",
            "broken",
            "slow",
            "fine",
            "late",
            "--extra",
            "broken=echo half; exit 3",
            "--extra",
            "slow=sleep 60 & wait",
            "--extra",
            'fine=echo "$DEVICE rows in $OUT"',
            "--extra",
            "late=sleep 30",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert run.returncode == 1
    assert steps["broken"]["status"] == "failed (exit 3)" and steps["broken"]["table"] == ["half"]
    assert steps["slow"]["status"] == "timed out after 3 s"
    assert steps["fine"]["status"] == "ok" and steps["fine"]["table"] == [f"cpu rows in {out}"]
    assert steps["late"]["status"] in ("timed out after 3 s", "skipped: the time budget is spent")


def test_the_packed_wheels_and_the_image_cover_every_import_of_the_check():
    """bench/gpu_wheels.sh's packing list, dry-run, against what the check's steps import: a module neither
    packed nor in the GPU machine's image would fail every step there."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    sys.path.insert(0, str(ROOT))
    from bench.gpu_check import needed_imports

    listed = subprocess.run(["bash", "bench/gpu_wheels.sh", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    packed = {canonicalize_name(line.split("==")[0]) for line in listed.stdout.split()}
    image_list = (ROOT / "bench" / "gpu_image_packages.txt").read_text().splitlines()
    image = {canonicalize_name(line.strip()) for line in image_list if line.strip() and not line.startswith("#")}
    distributions = packages_distributions()
    needed = needed_imports()
    assert {"fastapi", "rq", "redis", "torch", "uvicorn"} <= needed
    uncovered = [
        module
        for module in sorted(needed)
        if not {canonicalize_name(d) for d in distributions.get(module, [module])} & (packed | image)
    ]
    assert not uncovered, f"neither packed by bench/gpu_wheels.sh nor in the image: {uncovered}"


def test_refuses_loudly_and_runs_nothing_when_the_wheels_are_missing(tmp_path):
    bare = tmp_path / "bare"  # a Python with nothing installed: as the GPU machine without .gpu-trip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", "bench/gpu_check.sh", str(out), "--device", "cpu", "--tiny"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": str(bare / "bin" / "python")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "REFUSED" in run.stderr and "fastapi" in run.stderr and "gpu_wheels.sh" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["summary.txt"]
    assert "REFUSED" in (out / "summary.txt").read_text()


def test_the_api_worker_and_engine_start_without_the_clip_libraries():
    """The GPU trip carries no PyAV or OpenCV (gpu_check.OPTIONAL_IMPORTS): they load only when a clip is painted."""
    code = "import sys, service.app, worker.tasks, nst_core.transfer; print(sorted({'av', 'cv2'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
