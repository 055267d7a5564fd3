"""What can be checked of docker-compose.yml and the Dockerfiles without a Docker engine: every command,
console script, setting, healthcheck path and volume they name is real, and the build-time checks pass here."""

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
from tests.deploy.compose import (COMPOSE, CPU_OVERRIDE, Dockerfile, environment, load, merged,
                                  read_env_file)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVICES = load(COMPOSE)["services"]
DOCKERFILES = {name: Dockerfile.read(ROOT / SERVICES[name]["build"]["dockerfile"]) for name in ("api", "worker")}
EXTRAS = {"api": {"s3"}, "worker": {"engine", "s3"}}  # what each image installs besides the base


def requirements(extras: set[str]) -> set[str]:
    """Names of the distributions an image installs directly: the base dependencies plus `extras`."""
    specs = PYPROJECT["project"]["dependencies"] + [
        spec for extra in extras for spec in PYPROJECT["project"]["optional-dependencies"][extra]]
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


def nst_variables(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith("NST_")}


def assert_real_settings(env: dict[str, str], where: str) -> None:
    names = {f"NST_{name.upper()}" for name in Settings.model_fields}
    unknown = set(nst_variables(env)) - names
    assert not unknown, f"{where}: not settings: {unknown}"
    Settings(**{key[4:].lower(): value for key, value in nst_variables(env).items()})  # and valid values


def test_commands_and_console_scripts_exist():
    for name in ("api", "worker"):
        assert_command_exists(SERVICES[name]["command"], name)
        assert_command_exists(DOCKERFILES[name].exec_form("CMD"), name)
        assert SERVICES[name]["command"] == DOCKERFILES[name].exec_form("CMD")  # the image runs alone too


def test_every_nst_variable_is_a_setting():
    for name, service in merged(COMPOSE, CPU_OVERRIDE)["services"].items():
        assert_real_settings(environment(service), f"compose service {name}")
        assert_real_settings(environment(service, read_env_file(ROOT / "docker/minio.env")),
                             f"compose service {name} with docker/minio.env")
    for name, dockerfile in DOCKERFILES.items():
        assert_real_settings(dockerfile.env(), dockerfile.path.name)
    assert_real_settings(read_env_file(ROOT / "docker/minio.env"), "docker/minio.env")


def test_api_healthcheck_path_is_a_route(tmp_path):
    test = " ".join(SERVICES["api"]["healthcheck"]["test"])
    port, path = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)", test).groups()
    # In a process of its own: create_app sets up logging for the process it runs in.
    code = "import json, service.app; print(json.dumps(list(service.app.create_app().openapi()['paths'])))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "NST_STORAGE_DIR": str(tmp_path)})
    routes = set(json.loads(out.stdout))
    assert path in routes and path == "/healthz"
    command = SERVICES["api"]["command"]
    assert command[command.index("--port") + 1] == port and "8000:8000" in SERVICES["api"]["ports"]
    assert SERVICES["api"]["healthcheck"]["test"][1] == "python"  # the slim image has no curl


def test_storage_volume_is_shared_by_api_and_workers():
    volumes = load(COMPOSE)["volumes"]
    for name in ("api", "worker"):
        mounts = dict(volume.split(":", 1) for volume in SERVICES[name]["volumes"])
        assert "storage" in mounts and "storage" in volumes
        target = mounts["storage"]
        image_dir = DOCKERFILES[name].env()["NST_STORAGE_DIR"]
        assert environment(SERVICES[name])["NST_STORAGE_DIR"] == target == image_dir
        # the mount point exists in the image, owned by the user the process runs as, so the volume is writable
        user = DOCKERFILES[name].args("USER")[-1].split(":")[0]
        assert any(f"mkdir -p {target}" in run and f"chown -R {user}:" in run
                   for run in DOCKERFILES[name].args("RUN"))


def test_redis_is_private_persistent_and_healthchecked():
    redis = SERVICES["redis"]
    assert "ports" not in redis
    command = redis["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    for name in ("api", "worker"):
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert environment(SERVICES[name])["NST_REDIS_URL"].startswith("redis://redis:6379/")


def test_worker_reserves_a_gpu_scales_and_stops_cleanly():
    worker = SERVICES["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N needs neither
    grace = re.fullmatch(r"(\d+)(s|m)", worker["stop_grace_period"]).groups()
    assert int(grace[0]) * (60 if grace[1] == "m" else 1) >= 60
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_cpu_override_drops_the_gpu():
    worker = merged(COMPOSE, CPU_OVERRIDE)["services"]["worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"] == []
    assert environment(worker)["NST_DEVICE"] == "cpu"
    assert worker["image"] != SERVICES["worker"]["image"]  # the CPU build never replaces the CUDA one
    declared = {text.split("=")[0] for text in DOCKERFILES["worker"].args("ARG")}
    assert set(worker["build"]["args"]) <= declared


def test_optional_services_sit_behind_profiles():
    assert SERVICES["rq-dashboard"]["profiles"] == ["dashboard"]
    assert SERVICES["minio"]["profiles"] == SERVICES["minio-init"]["profiles"] == ["minio"]
    assert "minio" in read_env_file(ROOT / "docker/minio.env")["COMPOSE_PROFILES"].split(",")
    for name in ("redis", "api", "worker"):
        assert "profiles" not in SERVICES[name]
    for name in ("rq-dashboard", "minio"):  # consoles on this host only
        assert all(port.startswith("127.0.0.1:") for port in SERVICES[name]["ports"])


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
    installs = {name: " ".join(run for run in dockerfile.args("RUN") if "pip install" in run)
                for name, dockerfile in DOCKERFILES.items()}
    assert "engine" not in installs["api"] and "torch" not in installs["api"]
    assert '".[engine,s3]"' in installs["worker"]
    pins = {Requirement(spec).name: str(Requirement(spec).specifier)
            for spec in PYPROJECT["project"]["optional-dependencies"]["engine"]}
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
