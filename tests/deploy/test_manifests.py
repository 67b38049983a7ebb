"""deploy/ without a cluster: every variant rendered (base and each overlay), checked against the
Kubernetes schemas, scanned by checkov, and held to the gateway's own facts (its settings, its
probes, its shutdown arithmetic, the restricted security profile), for the API pods and for the
order-intake worker (``erp-gateway worker``, its own Deployment)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.routes.health import READY_TIMEOUT_SECONDS
from gateway.settings import Settings, SettingsError, check_startup, load_settings
from tests.deploy.kustomize import KustomizeError, Resource, load_documents, merge_patch, render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VARIANTS = {"base": DEPLOY / "base"} | {
    f"overlays/{path.name}": path for path in sorted((DEPLOY / "overlays").iterdir()) if path.is_dir()
}
#: The oldest Kubernetes the manifests claim (lifecycle.preStop.sleep is on by default from 1.30)
#: and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
#: checkov checks a manifest may skip, each with its reason in the annotation.
ALLOWED_SKIPS = {"CKV_K8S_43", "CKV_K8S_21"}
#: ... and the ones only the intake worker may skip: it has nothing to probe (liveness CKV_K8S_8,
#: readiness CKV_K8S_9; its metrics thread says nothing of the posting loop), and an exec probe
#: would have nothing real to check.
WORKER_SKIPS = {"CKV_K8S_8", "CKV_K8S_9"}
COMPONENT = "app.kubernetes.io/component"
API, WORKER = "api", "intake-worker"
SECRET_EXAMPLE = "secret.example.yaml"
#: The longest Redis failover the readiness probe must ride out (Sentinel or Cluster).
REDIS_FAILOVER_SECONDS = 30


def variant_params() -> Iterator[Any]:
    for name, path in VARIANTS.items():
        yield pytest.param(path, id=name)


def one(resources: list[Resource], kind: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def deployment_of(resources: list[Resource], component: str) -> Resource:
    """The one Deployment whose pods are ``component``'s."""
    found = [
        r
        for r in resources
        if r["kind"] == "Deployment" and r["spec"]["template"]["metadata"]["labels"].get(COMPONENT) == component
    ]
    assert len(found) == 1, f"expected one Deployment of {component} pods, found {len(found)}"
    return found[0]


def selector_of(resource: Resource) -> dict[str, str]:
    """The labels a Service, PodDisruptionBudget, NetworkPolicy or Deployment selects pods by."""
    spec = resource["spec"]
    if resource["kind"] == "Service":
        selector: dict[str, str] = spec["selector"]
    elif resource["kind"] == "NetworkPolicy":
        selector = spec["podSelector"]["matchLabels"]
    else:
        selector = spec["selector"]["matchLabels"]
    return selector


def selects(selector: dict[str, str], deployment: Resource) -> bool:
    return bool(selector) and selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def selecting(resources: list[Resource], kind: str, deployment: Resource) -> Resource:
    """The one ``kind`` that selects ``deployment``'s pods."""
    found = [r for r in resources if r["kind"] == kind and selects(selector_of(r), deployment)]
    assert len(found) == 1, f"expected one {kind} of {deployment['metadata']['name']}, found {len(found)}"
    return found[0]


def secret_example(variant: Path) -> Resource:
    """The Secret a variant mounts, as its (or the base's) secret.example.yaml names its keys."""
    path = variant / SECRET_EXAMPLE if (variant / SECRET_EXAMPLE).exists() else DEPLOY / "base" / SECRET_EXAMPLE
    (secret,) = load_documents(path)
    return secret


class Rendered:
    """One variant's resources and the parts the checks read."""

    def __init__(self, variant: Path) -> None:
        self.resources = render(variant)
        self.deployment = deployment_of(self.resources, API)
        self.pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]
        self.worker = deployment_of(self.resources, WORKER)
        self.worker_pod = self.worker["spec"]["template"]["spec"]
        (self.worker_container,) = self.worker_pod["containers"]
        self.config: dict[str, str] = one(self.resources, "ConfigMap")["data"]
        self.secret = secret_example(variant)

    def setting(self, env: str, default: Any) -> Any:
        return self.config.get(env, default)


@pytest.fixture(params=list(variant_params()))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(request.param)


# --- the renderer itself ----------------------------------------------------------------------


def test_merge_patch_merges_maps_removes_nulls_and_merges_named_lists() -> None:
    base = {"data": {"A": "1", "B": "2"}, "volumes": [{"name": "x", "v": 1}, {"name": "y", "v": 2}], "args": ["a"]}
    patch = {"data": {"A": None, "C": "3"}, "volumes": [{"name": "y", "v": 3}, {"name": "z"}], "args": ["b"]}
    assert merge_patch(base, patch) == {
        "data": {"B": "2", "C": "3"},
        "volumes": [{"name": "x", "v": 1}, {"name": "y", "v": 3}, {"name": "z"}],
        "args": ["b"],
    }
    assert base["data"] == {"A": "1", "B": "2"}  # not changed in place


def test_render_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("kind: Kustomization\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("kind: Kustomization\npatches:\n  - path: p.yaml\n")
    (tmp_path / "p.yaml").write_text("kind: ConfigMap\nmetadata: {name: nowhere}\n")
    with pytest.raises(KustomizeError, match="nowhere"):
        render(tmp_path)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "twice.yaml").write_text("kind: ConfigMap\ndata:\n  A: '1'\n  A: '2'\n")
    with pytest.raises(KustomizeError, match="A given twice"):
        load_documents(tmp_path / "twice.yaml")


def test_every_overlay_patch_changes_its_variant() -> None:
    base = render(DEPLOY / "base")
    for name, path in VARIANTS.items():
        if name != "base":
            assert render(path) != base, f"{name} renders the same as the base"


# --- schemas and policy -----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", list(variant_params()))
def test_schema_valid_strict(variant: Path, version: str) -> None:
    """Strict: a field the schema does not have (a typo, a field of a newer release) fails."""
    for resource in [*render(variant), secret_example(variant)]:
        kubernetes_validate.validate(resource, version, strict=True)


def checkov_binary() -> Path:
    version = re.search(r"^CHECKOV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert version is not None, "Makefile: CHECKOV_VERSION"
    return Path.home() / ".cache" / "erp-gateway" / f"checkov-{version[1]}" / "bin" / "checkov"


def test_checkov_finds_nothing(tmp_path: Path) -> None:
    """What is applied is scanned (each variant rendered, and the Secret it expects), not the
    patches on their own; a skip is one check on one resource, with a reason."""
    binary = checkov_binary()
    assert binary.exists(), f"{binary} is missing: run `make checkov` (part of `make test`)"
    for name, path in VARIANTS.items():
        out = tmp_path / name.replace("/", "-")
        out.mkdir()
        (out / "rendered.yaml").write_text(yaml.safe_dump_all([*render(path), secret_example(path)], sort_keys=False))
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("BC_", "PRISMA_"))}
    result = subprocess.run(
        [binary, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        env=environ | {"CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "LOG_LEVEL": "ERROR"},
        timeout=300,
        check=False,
    )
    worker_names = {deployment_of(render(path), WORKER)["metadata"]["name"] for path in VARIANTS.values()}
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sum(r["summary"]["passed"] for r in reports) > 50 * len(VARIANTS)
    assert sum(r["summary"]["parsing_errors"] for r in reports) == 0
    assert sum(r["summary"]["resource_count"] for r in reports) >= 11 * len(VARIANTS)
    worker_skips: list[str] = []
    for skipped in (c for r in reports for c in r["results"]["skipped_checks"]):
        kind, *_, name = skipped["resource"].split(".")
        if skipped["check_id"] in WORKER_SKIPS:
            assert (kind, name) in {("Deployment", n) for n in worker_names}, f"{skipped['check_id']} {name}"
            worker_skips.append(skipped["check_id"])
        else:
            assert skipped["check_id"] in ALLOWED_SKIPS, skipped["check_id"]
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, f"{skipped['check_id']}: give a reason"
    assert sorted(worker_skips) == sorted([*WORKER_SKIPS] * len(VARIANTS)), "the worker skips its probe checks, only it"


# --- the gateway's own facts ------------------------------------------------------------------


def test_shutdown_outlasts_prestop_and_graceful_timeout(rendered: Rendered) -> None:
    sleep = rendered.container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(rendered.setting("ERPGW_SERVER__GRACEFUL_TIMEOUT", Settings().server.graceful_timeout))
    margin = 5  # gunicorn's own exit after the last worker, the metrics directory removed
    assert rendered.pod["terminationGracePeriodSeconds"] >= sleep + graceful + margin
    assert 5 <= sleep <= 15, "endpoint removal takes a few seconds to reach every proxy"
    write = float(rendered.setting("ERPGW_TIMEOUTS__WRITE_SECONDS", Settings().timeouts.write_seconds))
    assert graceful > write, "a write in flight at SIGTERM (a return) must be able to finish"


def test_probes(rendered: Rendered) -> None:
    container = rendered.container
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    # /readyz answers within its own time limit; the probe must wait for that answer.
    assert readiness["timeoutSeconds"] > READY_TIMEOUT_SECONDS
    # A Redis failover (10-30 s) answers "degraded" with 200; should each probe meanwhile hit
    # /readyz's own time limit (a 503), the pod still outlasts it in rotation.
    assert readiness["periodSeconds"] * (readiness["failureThreshold"] - 1) > REDIS_FAILOVER_SECONDS
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in {"http", container["ports"][0]["containerPort"]}


def local_mounts(
    pod: dict[str, Any], container: dict[str, Any], where: Path, without: tuple[str, str] | None = None
) -> Callable[[str], str]:
    """Each of the container's mounts made a local directory under ``where`` (a Secret's items
    as files, except ``without``: (volume, path)); the function maps a path in the pod to it."""
    mounts = {m["mountPath"]: where / m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for place in mounts.values():
        place.mkdir(parents=True)
        secret = volumes[place.name].get("secret")
        for item in secret["items"] if secret else []:
            if (place.name, item["path"]) != without:
                (place / item["path"]).write_text("not-the-real-one\n")

    def local(value: str) -> str:
        for mount_path, place in mounts.items():
            if value.startswith(mount_path + "/"):
                return str(place) + value[len(mount_path) :]
        return value

    return local


def test_config_map_is_real_settings_that_start(rendered: Rendered, tmp_path: Path) -> None:
    """Every key is a setting (a typo fails load_settings), and the whole start-up check passes
    with each mount replaced by a local directory: secret files present, state writable."""
    local = local_mounts(rendered.pod, rendered.container, tmp_path)
    assert all(name.startswith("ERPGW_") for name in rendered.config)
    settings = load_settings({name: local(value) for name, value in rendered.config.items()})
    check_startup(settings, serving=True)
    assert settings.server.host == "0.0.0.0"
    assert settings.backend == "tryton", "production runs on Tryton, not the embedded sample"
    assert settings.redis.mode in {"sentinel", "cluster"}
    assert not settings.auth.dev_mode


def test_secret_files_are_mounted_keys(rendered: Rendered) -> None:
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    secret_volumes = {v["name"]: v["secret"] for v in rendered.pod["volumes"] if "secret" in v}
    keys = set(rendered.secret["stringData"])
    files = {name: value for name, value in rendered.config.items() if name.endswith("_FILE")}
    assert files, "secrets come from files"
    for name, value in files.items():
        where = [
            (volume, item)
            for volume, source in secret_volumes.items()
            for item in source["items"]
            if value == f"{mounts[volume]['mountPath']}/{item['path']}"
        ]
        assert where, f"{name}={value} is not a file of a mounted Secret"
        ((volume, item),) = where
        assert mounts[volume]["readOnly"] is True
        assert secret_volumes[volume]["secretName"] == rendered.secret["metadata"]["name"]
        assert item["key"] in keys, f"{name}: the Secret has no key {item['key']}"
    for volume, source in secret_volumes.items():
        assert source["defaultMode"] in {0o400, 0o440}, f"{volume}: owner (and fsGroup) read only"
        assert {item["key"] for item in source["items"]} <= keys
    assert not any("PASSWORD" in name and not name.endswith("_FILE") for name in rendered.config)
    assert "env" not in rendered.container, "settings come from the ConfigMap, secrets from files"


def test_ports_agree(rendered: Rendered) -> None:
    port = int(rendered.setting("ERPGW_SERVER__PORT", Settings().server.port))
    (container_port,) = rendered.container["ports"]
    assert container_port["containerPort"] == port
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = one(rendered.resources, "Service")
    assert service["spec"]["ports"][0]["targetPort"] in {container_port["name"], port}
    policy = selecting(rendered.resources, "NetworkPolicy", rendered.deployment)
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [port]


def assert_restricted(pod_spec: dict[str, Any], container_spec: dict[str, Any]) -> None:
    pod, container = pod_spec["securityContext"], container_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert container["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"} == container["seccompProfile"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container.get("privileged", False) is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["automountServiceAccountToken"] is False
    dockerfile_user = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    expected = f"{container['runAsUser']}:{container['runAsGroup']}"
    assert dockerfile_user == [expected], "the image's numeric USER is the pod's runAsUser:runAsGroup"
    assert container["runAsUser"] >= 10000, "above the host's users"
    for key in ("runAsUser", "runAsGroup"):  # the container's wins: both levels must say the same
        assert pod[key] == container[key], key
    assert "args" not in container_spec, "settings come from the ConfigMap; an argument would override it"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod_spec.get(key, False)


def test_restricted_security_context(rendered: Rendered) -> None:
    assert_restricted(rendered.pod, rendered.container)
    assert "command" not in rendered.container, "the image's own `erp-gateway serve`"


def test_written_paths_are_on_writable_volumes(rendered: Rendered) -> None:
    """With a read-only root, what the gateway writes needs a volume: /tmp (the Prometheus
    multiprocess directory, tempfile.mkdtemp) and the idempotency file's directory."""
    empty_dirs = {v["name"] for v in rendered.pod["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in rendered.container["volumeMounts"] if m["name"] in empty_dirs}
    assert "/tmp" in writable
    settings = load_settings(rendered.config)
    assert str(Path(settings.idempotency.path).parent) in writable
    for volume in rendered.pod["volumes"]:
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), f"{volume['name']}: bound the node's disk or memory it takes"


def test_resources_fit_the_workers(rendered: Rendered) -> None:
    resources = rendered.container["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"]
        assert kind in resources["limits"]
    workers = int(rendered.setting("ERPGW_SERVER__WORKERS", Settings().server.workers))
    assert workers <= float(resources["limits"]["cpu"]), "more workers than CPUs only queue on the limit"


def test_selectors_and_references_match(rendered: Rendered) -> None:
    """Each Deployment's pods are its own (its selector, its spread), each has its one
    PodDisruptionBudget and NetworkPolicy, and none of these selects the other's pods too."""
    deployments = [r for r in rendered.resources if r["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        rendered.deployment["metadata"]["name"],
        rendered.worker["metadata"]["name"],
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        others = [d for d in deployments if d is not deployment]
        assert selects(deployment["spec"]["selector"]["matchLabels"], deployment)
        assert not any(selects(deployment["spec"]["selector"]["matchLabels"], d) for d in others)
        for kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = selector_of(selecting(rendered.resources, kind, deployment))
            assert not any(selects(selector, d) for d in others), f"a {kind} of two Deployments"
        for constraint in pod["topologySpreadConstraints"]:
            assert selects(constraint["labelSelector"]["matchLabels"], deployment)
            assert not any(selects(constraint["labelSelector"]["matchLabels"], d) for d in others)
        assert pod["serviceAccountName"] == one(rendered.resources, "ServiceAccount")["metadata"]["name"]
        (container,) = pod["containers"]
        (source,) = container["envFrom"]
        assert source["configMapRef"]["name"] == one(rendered.resources, "ConfigMap")["metadata"]["name"]
    service = one(rendered.resources, "Service")
    assert selects(selector_of(service), rendered.deployment)
    assert not selects(selector_of(service), rendered.worker), "the worker serves nothing"
    hpa = one(rendered.resources, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", rendered.deployment["metadata"]["name"])


def test_rollout_and_disruption_keep_capacity(rendered: Rendered) -> None:
    spec = rendered.deployment["spec"]
    assert "replicas" not in spec, "the HPA owns the count; a replicas field resets it on every apply"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = selecting(rendered.resources, "PodDisruptionBudget", rendered.deployment)["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 2
    hpa = one(rendered.resources, "HorizontalPodAutoscaler")["spec"]
    assert 3 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert {c["topologyKey"] for c in rendered.pod["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}


def test_image_is_pinned(rendered: Rendered) -> None:
    image = rendered.container["image"]
    name, _, tag = image.rpartition(":")
    assert name, image
    assert "/" not in tag, f"{image}: no tag"
    assert tag not in {"", "latest"}, image
    assert rendered.worker_container["image"] == image, "the worker runs the API's release"


def test_every_yaml_file_is_part_of_a_variant() -> None:
    """A file in deploy/ that no kustomization names would be neither applied nor tested."""
    named: set[Path] = set()
    for path in VARIANTS.values():
        (kustomization,) = load_documents(path / "kustomization.yaml")
        named |= {(path / r).resolve() for r in kustomization.get("resources", [])}
        named |= {(path / p["path"]).resolve() for p in kustomization.get("patches", [])}
        named |= {(path / "kustomization.yaml").resolve(), (path / SECRET_EXAMPLE).resolve()}
    stray = [str(p.relative_to(ROOT)) for p in DEPLOY.rglob("*.y*ml") if p.resolve() not in named]
    assert not stray, stray


# --- the order-intake worker ------------------------------------------------------------------


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in container.get("env", []) if "value" in entry}


def test_only_the_worker_posts(rendered: Rendered) -> None:
    """The API pods accept orders and leave posting them to the worker Deployment, which sees
    the API pods' intakes through Redis (without Redis, each pod's SQLite file is its own)."""
    api = load_settings(rendered.config | container_env(rendered.container))
    assert api.intake.enabled
    assert api.intake.post_in_workers is False, "the API pods must not post: the worker does"
    assert api.redis.configured, "the worker shares the intake store with the API pods only through Redis"
    container = rendered.worker_container
    assert container["command"] == ["erp-gateway", "worker"]
    assert "args" not in container, "settings come from the ConfigMap; an argument would override it"
    for each in (container, rendered.container):
        assert "env" not in each, "one ConfigMap, no per-container settings"
    assert rendered.worker["spec"]["replicas"] >= 2


def test_worker_shutdown_outlasts_a_post_in_flight(rendered: Rendered) -> None:
    """At SIGTERM the worker claims nothing more and lets each post in flight finish: the call
    budget's wait, the adapter's start-up login if it still runs (a post waits for it), the ERP
    write, then its outcome recorded in Redis. Killed sooner, the order is posted again once its
    lease runs out (found by its key in the ERP): safe, but late."""
    settings = load_settings(rendered.config)
    timeouts = settings.timeouts
    in_flight = settings.erp_limits.max_wait_seconds + timeouts.start_seconds + timeouts.write_seconds
    margin = 10  # the outcome written to Redis, the clients closed, the interpreter's exit
    grace = rendered.worker_pod["terminationGracePeriodSeconds"]
    assert grace > timeouts.write_seconds + margin
    assert grace >= in_flight + margin
    assert settings.intake.lease_seconds > timeouts.write_seconds, "a post outlasting its lease is posted twice"
    assert "lifecycle" not in rendered.worker_container, "no endpoint to leave: a preStop only delays SIGTERM"


def test_worker_mounts_only_what_it_needs(rendered: Rendered, tmp_path: Path) -> None:
    """The worker writes nothing (intake state is in Redis; it keeps no idempotency file and no
    metrics directory), so it mounts the Secret's files alone, read-only: each of them is needed
    by its start-up check (`erp-gateway worker` runs check_startup(serving=False)), and none more."""
    pod, container = rendered.worker_pod, rendered.worker_container
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all(set(v) == {"name", "secret"} for v in volumes.values()), "no emptyDir: the worker writes no file"
    assert sorted(m["name"] for m in container["volumeMounts"]) == sorted(volumes)
    assert all(m["readOnly"] is True for m in container["volumeMounts"])
    keys = set(rendered.secret["stringData"])
    items = [(name, item["path"]) for name, v in volumes.items() for item in v["secret"]["items"]]
    for name, volume in volumes.items():
        assert volume["secret"]["secretName"] == rendered.secret["metadata"]["name"]
        assert volume["secret"]["defaultMode"] in {0o400, 0o440}, f"{name}: owner (and fsGroup) read only"
        assert {item["key"] for item in volume["secret"]["items"]} <= keys

    def starts(where: Path, without: tuple[str, str] | None = None) -> None:
        local = local_mounts(pod, container, where, without)
        check_startup(load_settings({name: local(value) for name, value in rendered.config.items()}), serving=False)

    starts(tmp_path / "all")
    unneeded = []
    for index, (volume, path) in enumerate(items):
        try:
            starts(tmp_path / f"without-{index}", without=(volume, path))
        except SettingsError:  # names the *_FILE setting that reads the file
            continue
        unneeded.append(f"{volume}/{path}")
    assert not unneeded, f"mounted, but the worker starts without them: {unneeded}"


def test_worker_restricted_security_context(rendered: Rendered) -> None:
    assert_restricted(rendered.worker_pod, rendered.worker_container)
    assert rendered.worker_pod["securityContext"] == rendered.pod["securityContext"], "the API pods' profile"
    assert rendered.worker_container["securityContext"] == rendered.container["securityContext"]


def test_worker_has_no_port_and_no_pretend_probes(rendered: Rendered) -> None:
    """No HTTP server: nothing listens, nothing is probed. The process exits on a fatal error
    and the kubelet restarts it; an exec probe would have nothing real to check, and probing
    Redis or the ERP would restart every worker during their outage. checkov's probe checks are
    skipped on this Deployment alone, with that reason; minReadySeconds stands in for readiness
    in a rollout (a worker that exits at start-up never counts as available)."""
    container = rendered.worker_container
    port = int(rendered.setting("ERPGW_INTAKE__METRICS_PORT", 0))
    assert port, "the worker's metrics are scraped"
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe not in container, f"{probe}: the worker has nothing to answer it"
    skips = [v for k, v in rendered.worker["metadata"]["annotations"].items() if k.startswith("checkov.io/skip")]
    assert {skip.split("=", 1)[0] for skip in skips} >= WORKER_SKIPS
    assert rendered.worker["spec"]["minReadySeconds"] >= 5
    annotations = rendered.worker["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", str(port))
    assert annotations["prometheus.io/path"] == "/metrics"
    policy = selecting(rendered.resources, "NetworkPolicy", rendered.worker)["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [port], "only /metrics"


def test_worker_resources_and_spread(rendered: Rendered) -> None:
    """Sized for one asyncio process that mostly waits on the ERP; two replicas at least, on
    different nodes, drained one at a time; no autoscaler (CPU says nothing about the backlog)."""
    resources = rendered.worker_container["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"]
        assert kind in resources["limits"]
    assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"]) <= 1, "one process uses one CPU"
    assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])
    api = rendered.container["resources"]
    assert cpu(resources["requests"]["cpu"]) < cpu(api["requests"]["cpu"])
    assert mebibytes(resources["requests"]["memory"]) < mebibytes(api["requests"]["memory"])
    spec = rendered.worker["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = selecting(rendered.resources, "PodDisruptionBudget", rendered.worker)["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}, "one drained at a time, never all"
    assert spec["replicas"] - pdb["maxUnavailable"] >= 1
    hostname = [
        c for c in rendered.worker_pod["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"
    ]
    assert [c["whenUnsatisfiable"] for c in hostname] == ["DoNotSchedule"]
    targets = [
        r["spec"]["scaleTargetRef"]["name"] for r in rendered.resources if r["kind"] == "HorizontalPodAutoscaler"
    ]
    assert rendered.worker["metadata"]["name"] not in targets


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i)", quantity)
    assert found, f"{quantity}: give memory in Ki, Mi or Gi"
    return float(found[1]) * units[found[2]]
