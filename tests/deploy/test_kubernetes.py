"""deploy/kubernetes checked offline: each overlay renders (`kubectl kustomize`), every object validates against
the Kubernetes schemas (kubernetes-validate, strict) and the KEDA objects against KEDA's required fields, checkov
finds nothing that is not skipped with a reason, and what the manifests name is real: settings, images, routes,
the Redis queue list, the users and home folders of the images."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
from rq import Queue

from nst_shared.settings import Settings, secret_settings
from service.metrics_registry import JobCollector
from tests.conftest import ROOT, next_database_url
from tests.deploy.compose import COMPOSE, CPU_OVERRIDE, Dockerfile, config
from tests.deploy.kubernetes import (
    KUBECTL,
    OVERLAYS,
    TEST_SECRET,
    WITH_COMPONENTS,
    container_env,
    find,
    one,
    pod_specs,
    render,
    render_text,
    rendered_folder,
)
from tests.deploy.test_compose import SETTINGS, assert_real_settings

KUBERNETES_VERSION = "1.30.0"  # the oldest release still in support that the manifests must suit
CHECKOV = Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"  # scripts/bootstrap's own venv
DOCKERFILES = {name: Dockerfile.read(ROOT / "docker" / f"{name}.Dockerfile") for name in ("api", "worker")}
# The settings marked secret, less the Redis URL: the Deployments build it from the Secret's REDIS_PASSWORD.
SECRET_SETTINGS = {f"NST_{name.upper()}" for name in secret_settings()} - {"NST_REDIS_URL"}
# KEDA's ScaledObject and TriggerAuthentication CRDs (keda.sh/v1alpha1): the fields they require, and trigger
# metadata as a map of strings (a number there, e.g. `listLength: 5`, is refused by the API server).
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {"type": "object", "required": ["name"]},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer"},
                    "cooldownPeriod": {"type": "integer"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                "authenticationRef": {"type": "object", "required": ["name"]},
                            },
                        },
                    },
                },
            }
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {"type": "object", "required": ["parameter", "name", "key"]},
                    }
                },
            }
        },
    },
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture(scope="module", params=OVERLAYS + WITH_COMPONENTS)
def variant(request) -> str:
    """An overlay, or one with components on top."""
    return request.param


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    expressions = selector.get("matchExpressions", [])
    assert all(e["operator"] == "In" for e in expressions)
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and all(
        labels.get(e["key"]) in e["values"] for e in expressions
    )


def pod_labels(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    [workload] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name]
    return workload["spec"]["template"]["metadata"]["labels"]


def test_every_object_validates_against_the_kubernetes_schemas(variant):
    for obj in render(variant):
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # not Kubernetes' own: checked against KEDA's fields below
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_everything_in_one_namespace(variant):
    """KEDA's objects included: kustomize sets the namespace only on the objects of the kustomization naming it."""
    objects = render(variant)
    [namespace] = find(objects, "Namespace")
    others = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("namespace") for o in objects if o is not namespace}
    assert set(others.values()) == {namespace["metadata"]["name"]}, others


def test_the_schema_check_refuses_what_a_cluster_would():
    deployment = copy.deepcopy(one(render("cpu"), "Deployment", "nst-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = copy.deepcopy(one(render("gpu"), "ScaledObject", "nst-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 1  # a number, as KEDA's CRD refuses
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMAS["ScaledObject"])


def secret_ref(objects: list[dict[str, Any]], auth_name: str, parameter: str) -> tuple[str, str]:
    """The Secret and key a KEDA TriggerAuthentication hands a scaler as `parameter` (the key must exist)."""
    auth = one(objects, "TriggerAuthentication", auth_name)
    jsonschema.validate(auth, KEDA_SCHEMAS["TriggerAuthentication"])
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == parameter and ref["key"] in one(objects, "Secret", ref["name"])["data"]
    return ref["name"], ref["key"]


def test_keda_scales_gpu_workers_from_zero_on_the_queue_and_the_running_jobs(redis_server):
    objects = render("gpu")
    [scaled] = find(objects, "ScaledObject")
    jsonschema.validate(scaled, KEDA_SCHEMAS["ScaledObject"])
    spec = scaled["spec"]
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1
    worker = one(objects, "Deployment", spec["scaleTargetRef"]["name"])
    assert "replicas" not in worker["spec"]  # KEDA's to set: an apply must not fight it
    assert pod_specs(objects)[worker["metadata"]["name"]]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    triggers = {trigger["type"]: trigger for trigger in spec["triggers"]}
    assert set(triggers) == {"redis", "metrics-api"}
    # KEDA runs in its own namespace: Services by their full names, on their ports.
    namespace = one(objects, "Service", "nst-redis")["metadata"]["namespace"]

    def address(service: str) -> str:
        return f"{service}.{namespace}.svc.cluster.local:{one(objects, 'Service', service)['spec']['ports'][0]['port']}"

    # Waiting jobs: the list RQ pushes them onto, in the workers' Redis database, with Redis's own password.
    metadata = triggers["redis"]["metadata"]
    [config_map] = find(objects, "ConfigMap")
    queue_name = config_map["data"].get("NST_QUEUE_NAME", Settings.model_fields["queue_name"].default)
    assert metadata["listName"] == Queue.redis_queue_namespace_prefix + queue_name
    assert re.fullmatch(r"[1-9][0-9]*", metadata["listLength"])
    assert metadata["address"] == address("nst-redis")
    worker_env = container_env(objects, pod_specs(objects)["nst-worker"]["containers"][0])
    assert metadata.get("databaseIndex", "0") == worker_env["NST_REDIS_URL"].rsplit("/", 1)[1]
    secret = secret_ref(objects, triggers["redis"]["authenticationRef"]["name"], "password")
    redis_env = pod_specs(objects)["nst-redis"]["containers"][0]["env"]
    assert {"name": secret[0], "key": secret[1]} in [e["valueFrom"]["secretKeyRef"] for e in redis_env]
    # Waiting or running jobs: a gauge the API's /metrics really shows, with the metrics token.
    metadata = triggers["metrics-api"]["metadata"]
    assert metadata["url"] == f"http://{address('nst-api')}/metrics" and metadata["format"] == "prometheus"
    assert re.fullmatch(r"[1-9][0-9]*", metadata["targetValue"]) and metadata["authMode"] == "bearer"
    assert secret_ref(objects, triggers["metrics-api"]["authenticationRef"]["name"], "token")[1] == "NST_METRICS_TOKEN"
    collector = JobCollector(redis.Redis.from_url(next_database_url(redis_server.url)), queue_name)
    gauges = {family.name: family.type for family in collector.collect()}
    assert gauges[metadata["valueLocation"]] == "gauge"
    # KEDA's operator may reach Redis through the network policy (the API's port is open to the cluster).
    froms = one(objects, "NetworkPolicy", "nst-redis")["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in froms


def test_checkov_finds_nothing_not_skipped_with_a_reason(variant, tmp_path):
    assert CHECKOV.exists(), f"checkov is missing at {CHECKOV}: scripts/bootstrap installs it"
    (tmp_path / "rendered.yaml").write_text(render_text(variant))
    started = time.monotonic()
    out = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed_s = time.monotonic() - started
    report = json.loads(out.stdout)
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 100, report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20 and "\n" not in reason, (check["check_id"], check["resource"], reason)
    # Every skip written in the manifests is still needed: a check that now passes loses its skip.
    written = {
        (o["kind"], o["metadata"]["name"], value.split("=")[0])
        for o in render(variant)
        for key, value in o["metadata"].get("annotations", {}).items()
        if key.startswith("checkov.io/skip")
    }
    used = {(c["resource"].split(".")[0], c["resource"].split(".")[-1], c["check_id"]) for c in skipped}
    assert written == used
    assert "prismacloud" not in out.stderr  # nothing fetched
    print(f"checkov on overlays/{variant}: {elapsed_s:.1f} s")


def test_every_setting_the_manifests_pass_is_a_setting(overlay):
    objects = render(overlay)
    envs = {
        f"{name}/{container['name']}": container_env(objects, container)
        for name, spec in pod_specs(objects).items()
        if name != "nst-redis"
        for container in spec["containers"]
    }
    assert set(envs) == {"nst-api/api", "nst-worker/worker"}
    assert_real_settings(envs)
    for env in envs.values():
        assert {k for k in env if k.startswith("NST_")} <= SETTINGS
        assert env["NST_REDIS_URL"] == f"redis://:{TEST_SECRET}@nst-redis:6379/0"
        assert env["NST_STORAGE_URL"].startswith("s3://")  # workers on other nodes share the bucket, not a volume
        assert json.loads(env["NST_TRUSTED_PROXIES"])  # the ingress's X-Forwarded-For names the client
        assert float(env["NST_WORKER_MEMORY_GB"]) > 0  # what the API checks jobs against while workers are at zero
    # Secrets in the Secret only; the API and the workers read the same settings.
    [config_map] = find(objects, "ConfigMap")
    assert not set(config_map["data"]) & SECRET_SETTINGS
    assert SECRET_SETTINGS | {"REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} == set(
        one(objects, "Secret", "nst-secrets")["data"]
    )
    shared = {k: v for k, v in envs["nst-api/api"].items() if k != "NST_DEVICE"}
    assert shared == {k: v for k, v in envs["nst-worker/worker"].items() if k != "NST_DEVICE"}
    assert envs["nst-worker/worker"]["NST_DEVICE"] == {"cpu": "cpu", "gpu": "cuda"}[overlay]


def test_images_are_the_ones_docker_builds(overlay):
    compose = config(*((COMPOSE, CPU_OVERRIDE) if overlay == "cpu" else (COMPOSE,)))["services"]
    images = {name: [c["image"] for c in spec["containers"]] for name, spec in pod_specs(render(overlay)).items()}
    assert images == {
        "nst-api": [compose["api"]["image"]],
        "nst-worker": [compose["worker"]["image"]],
        "nst-redis": [compose["redis"]["image"]],
    }


def test_pods_run_locked_down(variant):
    for name, spec in pod_specs(render(variant)).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] not in (0, None), name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
    # The images' own user, so files the images made are theirs.
    specs = pod_specs(render(variant))
    for name, image in (("nst-api", "api"), ("nst-worker", "worker")):
        user = DOCKERFILES[image].args("USER")[-1].split(":")[0]
        assert str(specs[name]["securityContext"]["runAsUser"]) == user


def test_what_the_programs_write_is_a_volume(overlay):
    """The root filesystem is read-only: /tmp (uploads spooled, torch's scratch) and the worker's home folder
    (the CPU precision cache under ~/.cache) are emptyDirs; job files are in the bucket."""
    specs = pod_specs(render(overlay))
    home = re.search(r"--home-dir (\S+)", " ".join(DOCKERFILES["worker"].args("RUN"))).group(1)
    for name, paths in (("nst-api", {"/tmp"}), ("nst-worker", {"/tmp", home}), ("nst-redis", {"/data"})):
        mounts = {m["mountPath"]: m["name"] for m in specs[name]["containers"][0]["volumeMounts"]}
        assert paths <= set(mounts), name
        volumes = {v["name"]: v for v in specs[name].get("volumes", [])}
        for path in paths - {"/data"}:
            assert "emptyDir" in volumes[mounts[path]], (name, path)
    redis = one(render(overlay), "StatefulSet", "nst-redis")
    assert [t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]] == ["data"]


def test_workers_gpu_or_cpu_no_service_and_time_to_requeue(overlay):
    objects = render(overlay)
    spec = pod_specs(objects)["nst-worker"]
    [container] = spec["containers"]
    labels = pod_labels(objects, "nst-worker")
    assert not [s for s in find(objects, "Service") if labels_match({"matchLabels": s["spec"]["selector"]}, labels)]
    assert "ports" not in container
    # SIGTERM stops the job within one iteration and requeues it: tests/worker/test_workers.py holds a worker to
    # this grace period; compose gives two minutes.
    assert spec["terminationGracePeriodSeconds"] >= 120
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["nodeSelector"]  # the operator's to change
        # Every GPU may be taken: a rollout stops an old worker (its job requeued) before it starts a new one.
        assert one(objects, "Deployment", "nst-worker")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"] and "tolerations" not in spec
        assert one(objects, "Deployment", "nst-worker")["spec"]["replicas"] >= 1


def test_api_two_replicas_probes_on_real_routes_pdb_and_tls_ingress(overlay, tmp_path):
    objects = render(overlay)
    api = one(objects, "Deployment", "nst-api")
    assert api["spec"]["replicas"] == 2
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    cmd = DOCKERFILES["api"].exec_form("CMD")
    [port] = container["ports"]
    assert str(port["containerPort"]) == cmd[cmd.index("--port") + 1]
    code = "import json, service.app; print(json.dumps(list(service.app.create_app().openapi()['paths'])))"
    paths = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"NST_STORAGE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert {"/healthz", "/readyz"} <= set(json.loads(paths))
    labels = pod_labels(objects, "nst-api")
    [pdb] = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and labels_match(pdb["spec"]["selector"], labels)
    service = one(objects, "Service", "nst-api")
    assert labels_match({"matchLabels": service["spec"]["selector"]}, labels)
    [ingress] = find(objects, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] and ingress["spec"]["tls"][0]["hosts"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "nst-api" and backend["port"]["name"] == service["spec"]["ports"][0]["name"]


def test_only_the_api_and_workers_reach_redis(overlay):
    objects = render(overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in find(objects, "NetworkPolicy")}
    assert policies["nst-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    redis = policies["nst-redis"]
    assert labels_match(redis["podSelector"], pod_labels(objects, "nst-redis"))
    pods_allowed = [f["podSelector"] for f in redis["ingress"][0]["from"] if "podSelector" in f]
    for name, allowed in (("nst-api", True), ("nst-worker", True), ("nst-redis", False)):
        assert any(labels_match(s, pod_labels(objects, name)) for s in pods_allowed) == allowed, name
    others = [f for f in redis["ingress"][0]["from"] if "podSelector" not in f]
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    assert others == ([] if overlay == "cpu" else [keda])
    assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_redis_persists_with_a_password_or_does_not_start(overlay):
    redis = one(render(overlay), "StatefulSet", "nst-redis")
    [container] = redis["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    assert "--appendonly yes" in script and '--requirepass "$REDIS_PASSWORD"' in script
    # Without a password it refuses to start, saying why (the shell part runs here as in the container).
    out = subprocess.run(
        [*container["command"], script.split("exec redis-server")[0] + "echo started"],
        env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": ""},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "REDIS_PASSWORD is empty" in out.stderr and "started" not in out.stdout
    out = subprocess.run(
        [*container["command"], script.split("exec redis-server")[0] + "echo started"],
        env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": TEST_SECRET},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "started" in out.stdout


def test_no_secret_no_render(tmp_path):
    """Without secrets.env the overlays do not render: nothing is applied with a blank or known password."""
    folder = tmp_path / "kubernetes"
    shutil.copytree(rendered_folder(), folder)
    (folder / "base" / "secrets.env").unlink()
    out = subprocess.run([str(KUBECTL), "kustomize", str(folder / "overlays" / "gpu")], capture_output=True, text=True)
    assert out.returncode != 0 and "secrets.env" in out.stderr


def test_volume_storage_component_shares_one_claim_at_the_images_storage_dir():
    objects = render("gpu+volume-storage")
    claim = one(objects, "PersistentVolumeClaim", "nst-storage")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # workers on several nodes
    envs = {}
    for name, image in (("nst-api", "api"), ("nst-worker", "worker")):
        spec = pod_specs(objects)[name]
        volumes = {v["name"]: v for v in spec["volumes"]}
        [container] = spec["containers"]
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        envs[name] = container_env(objects, container)
        storage_dir = DOCKERFILES[image].env()["NST_STORAGE_DIR"]  # made and owned by the image's user
        assert envs[name].get("NST_STORAGE_DIR", storage_dir) == storage_dir
        assert mounts[storage_dir]["persistentVolumeClaim"]["claimName"] == "nst-storage"
        assert envs[name]["NST_STORAGE_URL"] == ""  # the folder, not the bucket
    assert_real_settings(envs)
