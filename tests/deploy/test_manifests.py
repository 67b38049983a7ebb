"""deploy/ without a cluster: every variant rendered (base and each overlay), checked against the
Kubernetes schemas, scanned by checkov, and held to the gateway's own facts (its settings, its
probes, its shutdown arithmetic, the restricted security profile)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.routes.health import READY_TIMEOUT_SECONDS
from gateway.settings import Settings, check_startup, load_settings
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


def secret_example(variant: Path) -> Resource:
    """The Secret a variant mounts, as its (or the base's) secret.example.yaml names its keys."""
    path = variant / SECRET_EXAMPLE if (variant / SECRET_EXAMPLE).exists() else DEPLOY / "base" / SECRET_EXAMPLE
    (secret,) = load_documents(path)
    return secret


class Rendered:
    """One variant's resources and the parts the checks read."""

    def __init__(self, variant: Path) -> None:
        self.resources = render(variant)
        self.deployment = one(self.resources, "Deployment")
        self.pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]
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
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sum(r["summary"]["passed"] for r in reports) > 50 * len(VARIANTS)
    assert sum(r["summary"]["parsing_errors"] for r in reports) == 0
    assert sum(r["summary"]["resource_count"] for r in reports) >= 8 * len(VARIANTS)
    for skipped in (c for r in reports for c in r["results"]["skipped_checks"]):
        assert skipped["check_id"] in ALLOWED_SKIPS, skipped["check_id"]
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, f"{skipped['check_id']}: give a reason"


# --- the gateway's own facts ------------------------------------------------------------------


def test_shutdown_outlasts_prestop_and_graceful_timeout(rendered: Rendered) -> None:
    sleep = rendered.container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(rendered.setting("ERPGW_SERVER__GRACEFUL_TIMEOUT", Settings().server.graceful_timeout))
    margin = 5  # gunicorn's own exit after the last worker, the metrics directory removed
    assert rendered.pod["terminationGracePeriodSeconds"] >= sleep + graceful + margin
    assert 5 <= sleep <= 15, "endpoint removal takes a few seconds to reach every proxy"


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


def test_config_map_is_real_settings_that_start(rendered: Rendered, tmp_path: Path) -> None:
    """Every key is a setting (a typo fails load_settings), and the whole start-up check passes
    with each mount replaced by a local directory: secret files present, state writable."""
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in rendered.container["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    for place in mounts.values():
        place.mkdir()
        secret = volumes[place.name].get("secret")
        for item in secret["items"] if secret else []:
            (place / item["path"]).write_text("not-the-real-one\n")

    def local(value: str) -> str:
        for mount_path, place in mounts.items():
            if value.startswith(mount_path + "/"):
                return str(place) + value[len(mount_path) :]
        return value

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
    policy = one(rendered.resources, "NetworkPolicy")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [port]


def test_restricted_security_context(rendered: Rendered) -> None:
    pod, container = rendered.pod["securityContext"], rendered.container["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert container["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"} == container["seccompProfile"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container.get("privileged", False) is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert rendered.pod["automountServiceAccountToken"] is False
    dockerfile_user = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    expected = f"{container['runAsUser']}:{container['runAsGroup']}"
    assert dockerfile_user == [expected], "the image's numeric USER is the pod's runAsUser:runAsGroup"
    assert container["runAsUser"] >= 10000, "above the host's users"
    for key in ("runAsUser", "runAsGroup"):  # the container's wins: both levels must say the same
        assert pod[key] == container[key], key
    assert "args" not in rendered.container, "settings come from the ConfigMap; an argument would override it"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not rendered.pod.get(key, False)


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
    deployment = rendered.deployment
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one(rendered.resources, "Service")["spec"]["selector"])
    assert selects(one(rendered.resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one(rendered.resources, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    for constraint in rendered.pod["topologySpreadConstraints"]:
        assert selects(constraint["labelSelector"]["matchLabels"])
    hpa = one(rendered.resources, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert rendered.pod["serviceAccountName"] == one(rendered.resources, "ServiceAccount")["metadata"]["name"]
    (source,) = rendered.container["envFrom"]
    assert source["configMapRef"]["name"] == one(rendered.resources, "ConfigMap")["metadata"]["name"]


def test_rollout_and_disruption_keep_capacity(rendered: Rendered) -> None:
    spec = rendered.deployment["spec"]
    assert "replicas" not in spec, "the HPA owns the count; a replicas field resets it on every apply"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = one(rendered.resources, "PodDisruptionBudget")["spec"]
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
