"""deploy/kubernetes as `kubectl kustomize` renders each overlay (no cluster needed), with a Secret filled in from
secrets.env.example, in a folder of its own."""

from __future__ import annotations

import atexit
import base64
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

KUBECTL = Path("/usr/bin/kubectl")
MANIFESTS = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu")
# An overlay with components on top ("OVERLAY+COMPONENT"), as docs/deployment.md tells an operator to write one.
WITH_COMPONENTS = ("gpu+volume-storage",)
# What a test operator writes into secrets.env: a value for every key, as docs/deployment.md asks.
TEST_SECRET = "0123456789abcdef"


@functools.cache
def rendered_folder() -> Path:
    """A copy of deploy/kubernetes with secrets.env written from the example (an operator's own is left out)."""
    folder = Path(tempfile.mkdtemp(prefix="nst-kubernetes-")) / "kubernetes"
    atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)
    shutil.copytree(MANIFESTS, folder, ignore=shutil.ignore_patterns("secrets.env"))
    example = (folder / "base" / "secrets.env.example").read_text()
    filled = re.sub(r"(?m)^([A-Z_]+)=$", rf"\1={TEST_SECRET}", example)
    (folder / "base" / "secrets.env").write_text(filled)
    return folder


@functools.cache
def render_text(overlay: str) -> str:
    """What `kubectl kustomize overlays/OVERLAY` prints (for "OVERLAY+COMPONENT", OVERLAY with
    components/COMPONENT added to its kustomization.yaml)."""
    assert KUBECTL.exists(), f"kubectl is missing at {KUBECTL}: the Kubernetes manifests cannot be rendered"
    folder = rendered_folder() / "overlays" / overlay
    if "+" in overlay and not folder.exists():  # the overlay with `components:` added, as the docs say
        base, *components = overlay.split("+")
        shutil.copytree(folder.parent / base, folder)
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        kustomization["components"] = [f"../../components/{c}" for c in components]
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize refused overlays/{overlay}: {out.stderr}"
    return out.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects of one overlay, freshly parsed (callers may change them)."""
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = find(objects, kind, name)
    return found


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workload's pod spec, by the workload's name."""
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in workloads}


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: its ConfigMaps and Secrets (envFrom) first, then `env`, each $(NAME)
    expanded from what came before, as the kubelet does."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        else:
            secret = one(objects, "Secret", source["secretRef"]["name"])
            env.update(secret.get("stringData", {}))
            env.update({k: decode(v) for k, v in secret.get("data", {}).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = decode(one(objects, "Secret", ref["name"])["data"][ref["key"]])
    return env


def decode(value: str) -> str:
    return base64.b64decode(value).decode()
