"""docker-compose.yml as Docker Compose itself reads it (`docker-compose config`, every combination docs/deployment.md
documents), checked for what Compose cannot know: every command, console script, setting, healthcheck path and
volume is real, the stack is closed by default, each GPU worker has a GPU of its own, and the Dockerfiles'
build-time checks pass here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from nst_shared.settings import Settings
from tests.conftest import ROOT
from tests.deploy.compose import COMPOSE, CPU_OVERRIDE, MINIO_ENV, Dockerfile, config

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BASE = config(COMPOSE)
SERVICES = BASE["services"]
DOCKERFILES = {name: Dockerfile.read(ROOT / SERVICES[name]["build"]["dockerfile"]) for name in ("api", "worker")}
EXTRAS = {"api": {"s3"}, "worker": {"engine", "s3"}}  # what each image installs besides the base
# The stack's own values; every other setting passes through from the operator's shell or env file.
FIXED = {"NST_REDIS_URL": "redis://redis:6379/0", "NST_STORAGE_DIR": "/data/storage", "NST_LOG_FORMAT": "json"}
SETTINGS = {f"NST_{name.upper()}" for name in Settings.model_fields}
# What docs/deployment.md documents (name: the compose arguments), each read by Compose in every test below.
COMBINATIONS = {
    "gpu": {},
    "cpu": {"files": (COMPOSE, CPU_OVERRIDE)},
    "dashboard": {"profiles": ("dashboard",)},
    "minio": {"env_file": MINIO_ENV},
    "cpu+minio+dashboard": {"files": (COMPOSE, CPU_OVERRIDE), "env_file": MINIO_ENV, "profiles": ("dashboard",)},
}


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def combination(request) -> dict:
    return config(
        *COMBINATIONS[request.param].get("files", ()),
        **{k: v for k, v in COMBINATIONS[request.param].items() if k != "files"},
    )


def gpu_override(tmp_path: Path, gpus: str) -> dict:
    """The compose model with `docker/gpu_workers.py GPUS` written beside the base, as docs/deployment.md does."""
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(".venv", ".git", "var", "test-artifacts", "__pycache__", ".gpu-trip"),
    )
    written = subprocess.run(
        [sys.executable, "docker/gpu_workers.py", gpus], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    (project / "docker-compose.gpus.yml").write_text(written)
    return config(project / "docker-compose.yml", project / "docker-compose.gpus.yml", project_dir=project)


def requirements(extras: set[str]) -> set[str]:
    """Names of the distributions an image installs directly: the base dependencies plus `extras`."""
    specs = PYPROJECT["project"]["dependencies"] + [
        spec for extra in extras for spec in PYPROJECT["project"]["optional-dependencies"][extra]
    ]
    return {Requirement(spec).name.lower() for spec in specs}


def assert_command_exists(command: list[str], image: str) -> None:
    """A console script of this project or of a distribution the image installs; `module:attr` args import."""
    program = command[0]
    if program not in PYPROJECT["project"]["scripts"]:
        providers = {ep.dist.name.lower() for ep in entry_points(group="console_scripts", name=program)}
        assert providers & requirements(EXTRAS[image]), f"{image}: {program} is no installed console script"
        assert shutil.which(program, path=str(Path(sys.executable).parent)), program
    for arg in command[1:]:
        if re.fullmatch(r"[a-z_.]+:[A-Za-z_]+", arg):
            module, attr = arg.split(":")
            out = subprocess.run([sys.executable, "-c", f"import {module}; {module}.{attr}"], cwd=ROOT)
            assert out.returncode == 0, arg


def environment(service: dict) -> dict[str, str]:
    """What the container gets: Compose leaves a passed-through variable that is unset as None (not set)."""
    return {key: value for key, value in (service.get("environment") or {}).items() if value is not None}


# Reads each environment as the programs do (from os.environ: JSON lists included), in one process for all.
_VALIDATE = """
import json, os, sys
from nst_shared.settings import Settings
for where, env in json.load(sys.stdin).items():
    for key in [k for k in os.environ if k.startswith("NST_")]:
        del os.environ[key]
    os.environ.update(env)
    try:
        Settings()
    except Exception as exc:
        sys.exit(f"{where}: {exc}")
"""


def assert_real_settings(envs: dict[str, dict[str, str]]) -> None:
    """Every NST_* variable of each environment (by where it comes from) is a setting with a valid value."""
    nst = {where: {k: v for k, v in env.items() if k.startswith("NST_")} for where, env in envs.items()}
    for where, env in nst.items():
        assert not set(env) - SETTINGS, f"{where}: not settings: {set(env) - SETTINGS}"
    out = subprocess.run(
        [sys.executable, "-c", _VALIDATE], cwd=ROOT, input=json.dumps(nst), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_commands_and_console_scripts_exist():
    for name in ("api", "worker"):
        assert_command_exists(SERVICES[name]["command"], name)
        assert_command_exists(DOCKERFILES[name].exec_form("CMD"), name)
        assert SERVICES[name]["command"] == DOCKERFILES[name].exec_form("CMD")  # the image runs alone too


def test_every_nst_variable_is_a_setting(combination):
    assert_real_settings(
        {
            **{f"compose service {name}": environment(service) for name, service in combination["services"].items()},
            **{dockerfile.path.name: dockerfile.env() for dockerfile in DOCKERFILES.values()},
        }
    )


def test_every_setting_reaches_api_and_workers_from_the_operator():
    """Each setting is the stack's own or passes through when the operator sets it; unset, it stays unset."""
    for name in ("api", "worker"):
        declared = SERVICES[name]["environment"]
        assert {key: declared[key] for key in FIXED} == FIXED
        passed = {key for key, value in declared.items() if value is None}
        assert SETTINGS - set(FIXED) - {"NST_DEVICE"} <= passed, f"{name} lacks {SETTINGS - set(FIXED) - passed}"
        assert environment(SERVICES[name]).keys() == FIXED.keys() | ({"NST_DEVICE"} if name == "worker" else set())
    security = {
        "NST_API_KEYS": '["k1","k2"]',
        "NST_LINK_SECRET": "s3cret",
        "NST_METRICS_TOKEN": "scrape",
        "NST_RATE_LIMIT_REQUESTS_PER_MIN": "120",
        "NST_RATE_LIMIT_SUBMISSIONS_PER_MIN": "5",
        "NST_CORS_ORIGINS": '["https://app.example"]',
        "NST_WEBHOOK_SECRET": "hook",
        "NST_WEBHOOK_ALLOW": '["10.0.0.0/8"]',
        "NST_REDIS_URL": "redis://elsewhere:6379/0",
    }
    services = config(COMPOSE, variables=security)["services"]
    for name in ("api", "worker"):
        env = environment(services[name])
        assert {k: env[k] for k in security if k != "NST_REDIS_URL"} == {
            k: v for k, v in security.items() if k != "NST_REDIS_URL"
        }
        assert env["NST_REDIS_URL"] == FIXED["NST_REDIS_URL"]  # the stack's own Redis, whatever the shell says
    assert_real_settings({name: environment(services[name]) for name in ("api", "worker")})


def test_api_published_on_this_host_only_unless_asked():
    [port] = SERVICES["api"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    [port] = config(COMPOSE, variables={"API_PUBLISH": "0.0.0.0:8080"})["services"]["api"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "8080", 8000)


def test_api_healthcheck_path_is_a_route(tmp_path):
    test = " ".join(SERVICES["api"]["healthcheck"]["test"])
    port, path = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)", test).groups()
    # In a process of its own: create_app sets up logging for the process it runs in.
    code = "import json, service.app; print(json.dumps(list(service.app.create_app().openapi()['paths'])))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NST_STORAGE_DIR": str(tmp_path)},
    )
    assert path in set(json.loads(out.stdout)) and path == "/healthz"
    command = SERVICES["api"]["command"]
    assert command[command.index("--port") + 1] == port == str(SERVICES["api"]["ports"][0]["target"])
    assert SERVICES["api"]["healthcheck"]["test"][1] == "python"  # the slim image has no curl


def test_storage_volume_is_shared_by_api_and_workers(combination):
    for name, service in combination["services"].items():
        if not name.startswith(("api", "worker")):
            continue
        mounts = {mount["source"]: mount["target"] for mount in service["volumes"] if mount["type"] == "volume"}
        image_dir = DOCKERFILES["api" if name == "api" else "worker"].env()["NST_STORAGE_DIR"]
        assert mounts["storage"] == environment(service)["NST_STORAGE_DIR"] == image_dir
        assert "storage" in combination["volumes"]
    for dockerfile in DOCKERFILES.values():
        # the mount point exists in the image, owned by the user the process runs as, so the volume is writable
        user = dockerfile.args("USER")[-1].split(":")[0]
        target = dockerfile.env()["NST_STORAGE_DIR"]
        assert any(f"mkdir -p {target}" in run and f"chown -R {user}:" in run for run in dockerfile.args("RUN"))


def test_redis_is_private_persistent_and_healthchecked(combination):
    redis = combination["services"]["redis"]
    assert "ports" not in redis
    command = redis["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(mount["target"] == "/data" and mount["type"] == "volume" for mount in redis["volumes"])
    for name in ("api", "worker"):
        assert combination["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_reserves_gpu_zero_scales_and_stops_cleanly():
    worker = SERVICES["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # By id, not by count: a count gives every replica the first GPUs, an id says so.
    assert device["device_ids"] == ["0"] and "count" not in device
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N needs neither
    grace = re.fullmatch(r"(\d+)m(\d+)s", worker["stop_grace_period"]).groups()
    assert int(grace[0]) * 60 + int(grace[1]) >= 60
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    # The image exposes no GPU by itself: only the reservation (or `docker run --gpus`) does.
    assert "NVIDIA_VISIBLE_DEVICES" not in DOCKERFILES["worker"].env()


@pytest.mark.parametrize(
    "gpus, ids", [("1", ["0"]), ("2", ["0", "1"]), ("8", [str(i) for i in range(8)]), ("1,3", ["1", "3"])]
)
def test_one_worker_service_per_gpu(tmp_path, gpus, ids):
    services = gpu_override(tmp_path, gpus)["services"]
    workers = {name: service for name, service in services.items() if name.startswith("worker")}
    assert len(workers) == len(ids)
    reserved = [
        device for worker in workers.values() for device in worker["deploy"]["resources"]["reservations"]["devices"]
    ]
    assert sorted(d["device_ids"][0] for d in reserved) == sorted(ids)  # each GPU once, one GPU each
    assert all(len(d["device_ids"]) == 1 and d["driver"] == "nvidia" for d in reserved)

    # Otherwise each is the worker of docker-compose.yml (its project path aside).
    def same(service: dict) -> dict:
        return {k: v for k, v in service.items() if k not in ("deploy", "build")}

    for worker in workers.values():
        assert same(worker) == same(services["worker"]) and worker["build"]["dockerfile"] == "docker/worker.Dockerfile"
    assert {"api", "redis"} <= set(services)


def test_gpu_workers_refuses_nonsense():
    for bad in ("0", "1,1", ","):
        out = subprocess.run([sys.executable, "docker/gpu_workers.py", bad], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 2 and "GPU" in out.stderr and not out.stdout


def test_cpu_override_drops_the_gpu():
    worker = config(COMPOSE, CPU_OVERRIDE)["services"]["worker"]
    assert not worker["deploy"]["resources"]["reservations"].get("devices")
    assert environment(worker)["NST_DEVICE"] == "cpu"
    assert worker["image"] != SERVICES["worker"]["image"]  # the CPU build never replaces the CUDA one
    declared = {text.split("=")[0] for text in DOCKERFILES["worker"].args("ARG")}
    assert set(worker["build"]["args"]) <= declared


def test_optional_services_sit_behind_profiles():
    optional = {"rq-dashboard": "dashboard", "minio": "minio", "minio-init": "minio"}
    assert set(SERVICES) == {"redis", "api", "worker"}
    for name, profile in optional.items():
        with_profile = config(COMPOSE, profiles=(profile,))["services"]
        assert name in with_profile and with_profile[name]["profiles"] == [profile]
    for name in ("rq-dashboard", "minio"):  # consoles on this host only
        service = config(COMPOSE, profiles=(optional[name],))["services"][name]
        assert all(port["host_ip"] == "127.0.0.1" for port in service["ports"])


def test_minio_env_file_moves_job_files_to_minio():
    services = config(COMPOSE, env_file=MINIO_ENV)["services"]
    assert {"minio", "minio-init"} <= set(services)  # the env file turns its profile on
    for name in ("api", "worker"):
        env = environment(services[name])
        assert env["NST_STORAGE_URL"] == "s3://nst/jobs" and env["NST_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    init = services["minio-init"]
    assert init["environment"]["NST_STORAGE_URL"] == "s3://nst/jobs"
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    # The bucket is the URL's host part, worked out by the shell inside minio-init (`config` prints the file's
    # $$ escapes as they are; the container gets $).
    script = init["command"][0].replace("$$", "$")
    bucket = subprocess.run(
        ["sh", "-c", script.split("mc alias")[0] + 'echo "$bucket"'],
        env={"NST_STORAGE_URL": "s3://nst/jobs"},
        capture_output=True,
        text=True,
    ).stdout
    assert bucket.strip() == "nst"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_run_as_non_root_under_an_init(name):
    dockerfile = DOCKERFILES[name]
    assert dockerfile.args("USER")[-1].split(":")[0] not in ("root", "0")
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    assert entrypoint[0].endswith("/tini") and entrypoint[1] == "--"
    assert any("apt-get install" in run and " tini" in run for run in dockerfile.args("RUN"))
    for text in dockerfile.args("COPY"):
        *sources, _ = text.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {text.split()[0] for text in dockerfile.args("COPY")} & set(ignored)


def test_api_image_has_no_torch_and_worker_image_pins_it():
    installs = {
        name: " ".join(run for run in dockerfile.args("RUN") if "pip install" in run)
        for name, dockerfile in DOCKERFILES.items()
    }
    assert "engine" not in installs["api"] and "torch" not in installs["api"]
    assert '".[engine,s3]"' in installs["worker"]
    pins = {
        Requirement(spec).name: str(Requirement(spec).specifier)
        for spec in PYPROJECT["project"]["optional-dependencies"]["engine"]
    }
    for package in ("torch", "torchvision"):
        assert f"{package}{pins[package]}" in installs["worker"]  # the image's torch is the project's torch


@pytest.mark.parametrize("name", ["api", "worker"])
def test_build_time_checks_pass_here(name):
    """The Dockerfiles' `python -c` checks (no torch in the API; the VGG19 weights load) run in this venv."""
    checks = DOCKERFILES[name].python_checks()
    assert checks
    for code in checks:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
