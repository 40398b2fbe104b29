"""Deployment artefacts stay true to the code: Kubernetes manifests, Prometheus rules, /metrics.

promtool (Debian package `prometheus`) is a required test tool: without it these tests fail,
naming the package, rather than skip.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AliasChoices

from guichet_launcher.services import BY_NAME, SERVICES, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS = ROOT / "deploy" / "prometheus"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
IMAGE = "ghcr.io/guichet/guichet:0.1.0"
SHARED_PREFIX = "GUICHET_"
# The oldest Kubernetes a city's cluster may still run, and the newest schemas bundled with
# kubernetes-validate: a field missing from the first or an API removed in the second fails.
KUBERNETES_VERSIONS = ("1.31", kubernetes_validate.latest_version())
# Settings fields that hold credentials: only ever from a Secret, never a literal or ConfigMap.
SECRET_FIELDS = {"database_url", "smtp_url", "auth_signing_keys", "pseudonym_secret"}


# --- loading -------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)


def _kustomization() -> dict[str, Any]:
    data = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _resources() -> list[dict[str, Any]]:
    """Everything `kubectl apply -k deploy/k8s` would create."""
    return [doc for name in _kustomization()["resources"] for doc in _documents(K8S / name)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _resources() if doc["kind"] == kind]


def _deployment(service: str) -> dict[str, Any]:
    found = [
        d
        for d in _of_kind("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == service
    ]
    assert len(found) == 1, f"expected one Deployment for {service}, found {len(found)}"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod"
    container: dict[str, Any] = containers[0]
    return container


def _served_service(container: dict[str, Any]) -> str:
    command = container["command"]
    assert command[:3] == ["python", "-m", "guichet_launcher"], command
    assert command[3] == "serve", command
    return str(command[4])


def _configmaps() -> dict[str, dict[str, str]]:
    return {cm["metadata"]["name"]: cm.get("data", {}) for cm in _of_kind("ConfigMap")}


def _example_secrets() -> dict[str, dict[str, str]]:
    return {s["metadata"]["name"]: s["stringData"] for s in _documents(SECRET_EXAMPLE)}


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    """Every variable the container gets (ConfigMaps, then `env`), Secrets from the example."""
    configmaps, secrets = _configmaps(), _example_secrets()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom source: {source}"
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names ConfigMap {name!r}, not in the kustomization"
        env.update(configmaps[name])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional", False), f"{var['name']}: a required secret is optional"
        assert ref["key"] in secrets.get(ref["name"], {}), (
            f"{var['name']} reads Secret {ref['name']!r} key {ref['key']!r}, which "
            f"{SECRET_EXAMPLE.name} does not document"
        )
        env[var["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _env_names(spec: ServiceSpec) -> dict[str, str]:
    """Environment variable name (upper case) -> settings field, as pydantic-settings reads them:
    the service prefix then the shared `GUICHET_` one, or the field's own aliases if it has any.
    """
    names: dict[str, str] = {}
    for field, info in spec.settings.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, AliasChoices):
            choices = [choice for choice in alias.choices if isinstance(choice, str)]
        elif isinstance(alias, str):
            choices = [alias]
        else:
            choices = [spec.env_prefix + field, SHARED_PREFIX + field]
        for choice in choices:
            names[choice.upper()] = field
    return names


def _service_params() -> Iterator[Any]:
    for spec in SERVICES:
        yield pytest.param(spec.name, id=spec.name)


# --- (a) schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schemas(path: Path, version: str) -> None:
    """Strict mode: an unknown or misspelt field is an error, not silently dropped."""
    documents = _documents(path)
    assert documents, f"{path.name} holds no manifest"
    errors = []
    for doc in documents:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    assert errors == [], f"{path.name} against Kubernetes {version}:\n" + "\n".join(errors)


# --- (b) kustomization ---------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = _kustomization()
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    expected = {p.name for p in _manifest_files()} - {SECRET_EXAMPLE.name}
    assert set(listed) == expected, (
        f"missing from kustomization.yaml: {sorted(expected - set(listed))}; "
        f"listed but absent: {sorted(set(listed) - expected)}"
    )
    stray = [p.name for p in K8S.iterdir() if p.is_file() and p.suffix != ".yaml"]
    assert stray == [], f"manifests must end in .yaml to be checked: {stray}"


def test_no_secret_value_is_committed() -> None:
    assert [s["metadata"]["name"] for s in _of_kind("Secret")] == []
    example = SECRET_EXAMPLE.read_text(encoding="utf-8")
    assert "not listed in kustomization.yaml" in example
    for values in _example_secrets().values():
        for value in values.values():
            assert "CHANGE-ME" in value, f"example secret holds something real-looking: {value}"
    for name, data in _configmaps().items():
        for field in SECRET_FIELDS:
            leaked = [key for key in data if key.upper().endswith(field.upper())]
            assert leaked == [], f"ConfigMap {name} carries a credential: {leaked}"


def test_every_resource_is_labelled() -> None:
    for doc in _resources() + _documents(SECRET_EXAMPLE):
        labels = doc["metadata"].get("labels", {})
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "guichet", where
        assert labels.get("app.kubernetes.io/name"), where
        component = labels.get("app.kubernetes.io/component")
        # Shared objects (the ConfigMap, the NetworkPolicy) belong to no single service.
        assert component is None or component in BY_NAME, f"{where}: unknown component"


# --- (c) Deployments against the launcher and the settings classes -------------------------


def test_one_deployment_per_launcher_service() -> None:
    served = sorted(_served_service(_container(d)) for d in _of_kind("Deployment"))
    assert served == sorted(BY_NAME), f"Deployments serve {served}, launcher has {sorted(BY_NAME)}"


@pytest.mark.parametrize("service", _service_params())
def test_deployment_runs_its_service_with_probes(service: str) -> None:
    deployment = _deployment(service)
    container = _container(deployment)
    pod = deployment["spec"]["template"]
    assert _served_service(container) == service
    assert container["image"] == IMAGE

    command = container["command"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}

    def probe_target(kind: str) -> tuple[str, int]:
        get = container[kind]["httpGet"]
        return get["path"], ports[get["port"]] if isinstance(get["port"], str) else get["port"]

    assert probe_target("livenessProbe") == ("/health", port)
    assert probe_target("readinessProbe") == ("/ready", port)
    if "startupProbe" in container:
        assert probe_target("startupProbe") == ("/health", port)

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == service
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    services = [s for s in _of_kind("Service") if s["spec"]["selector"] == selector]
    assert len(services) == 1, f"{service}: one Service selecting its pods"
    assert services[0]["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in services[0]["spec"]["ports"]] in (["http"], [port])
    pdbs = [
        p
        for p in _of_kind("PodDisruptionBudget")
        if p["spec"]["selector"]["matchLabels"] == selector
    ]
    assert len(pdbs) == 1, f"{service}: one PodDisruptionBudget for its pods"


@pytest.mark.parametrize("service", _service_params())
def test_deployment_is_locked_down_and_sized(service: str) -> None:
    deployment = _deployment(service)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod.get("automountServiceAccountToken") is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1, "/tmp must be mounted: the root filesystem is read-only"
    assert "emptyDir" in volumes[tmp[0]["name"]], "/tmp must be an emptyDir"
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, f"{bound} incomplete"


@pytest.mark.parametrize("service", _service_params())
def test_deployment_sets_only_settings_fields(service: str) -> None:
    spec = BY_NAME[service]
    container = _container(_deployment(service))
    accepted = _env_names(spec)
    names = [*(_configmaps_env_names(container)), *(v["name"] for v in container.get("env", []))]
    unknown = sorted(name for name in names if name.upper() not in accepted)
    assert unknown == [], (
        f"{service} reads no such setting: {unknown} (fields of {spec.settings.__name__}, "
        f"prefixed {spec.env_prefix} or {SHARED_PREFIX})"
    )
    for var in container.get("env", []):
        if accepted[var["name"].upper()] in SECRET_FIELDS:
            assert "secretKeyRef" in var.get("valueFrom", {}), f"{var['name']} must be a Secret"


def _configmaps_env_names(container: dict[str, Any]) -> list[str]:
    configmaps = _configmaps()
    return [
        key
        for source in container.get("envFrom", [])
        for key in configmaps.get(source["configMapRef"]["name"], {})
    ]


@pytest.mark.parametrize("service", _service_params())
def test_deployment_environment_starts_the_service_in_production(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings class accepts what the Deployment gives it, or the service stays at zero."""
    spec = BY_NAME[service]
    deployment = _deployment(service)
    container = _container(deployment)
    env = _container_env(container)
    for name in list(os.environ):
        if name.upper().startswith(SHARED_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    replicas = deployment["spec"]["replicas"]
    refusal: ValueError | None = None
    try:
        settings = spec.settings()
    except ValueError as exc:
        refusal = exc
        # The rest of its environment must still be right on the day it is scaled up.
        settings = spec.settings(env="development")
    if refusal is not None:
        # The gateway refuses its sandbox provider in production: it must not be scheduled
        # (it would crash-loop) until a real provider exists.
        assert replicas == 0, f"{service} cannot start with its manifest's environment: {refusal}"
    else:
        assert replicas == 2
        assert settings.env == "production"
    assert settings.bus == "kafka"
    assert settings.kafka_idempotent_producer is True
    secrets = _example_secrets()[f"guichet-{service}"]
    assert settings.database_url == secrets["database-url"], "own database, from its Secret"
    assert settings.database_url.startswith("postgresql://")
    assert getattr(settings, "seed_demo", False) is False, "no demo commune in production"
    if service == "notifications":
        assert getattr(settings, "smtp_url", None) == secrets["smtp-url"]
    writable = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    assert any(settings.data_dir.is_relative_to(mount) for mount in writable), (
        f"data_dir {settings.data_dir} is on the read-only root filesystem"
    )


def test_network_policy_admits_only_the_service_port() -> None:
    (policy,) = _of_kind("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "guichet"}
    assert "Ingress" in policy["spec"]["policyTypes"]
    container_ports = {
        p["containerPort"] for d in _of_kind("Deployment") for p in _container(d)["ports"]
    }
    for rule in policy["spec"]["ingress"]:
        assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {
            ("TCP", port) for port in container_ports
        }


# --- (d) Prometheus rules ------------------------------------------------------------------


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install the Debian package `prometheus` "
            "(apt-get install prometheus, or `make promtool`)"
        )
    return path


def _run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_are_valid() -> None:
    result = _run_promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests_pass() -> None:
    result = _run_promtool("test", "rules", "deploy/prometheus/alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_alert_unit_tests_cover_firing_and_quiet_cases() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text(encoding="utf-8"))
    checks = [check for test in tests["tests"] for check in test["alert_rule_test"]]
    fired = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in _alert_rules()}
    assert len(fired) >= 3, f"too few alerts proven to fire: {fired}"
    assert quiet == names, f"no 'does not fire' case for {sorted(names - quiet)}"
    assert (fired | quiet) <= names, f"tests name unknown alerts: {(fired | quiet) - names}"


def test_alerts_speak_french_to_operators() -> None:
    for rule in _alert_rules():
        assert re.fullmatch(r"Guichet[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) >= {"summary", "description"}, rule["alert"]
        text = " ".join(rule["annotations"].values())
        assert re.search(r"\b(le|la|les|des|du|depuis)\b", text), f"{rule['alert']}: not French"


def test_alert_labels_come_from_the_scrape_job() -> None:
    """The rules aggregate on labels that only the `guichet` scrape job's relabelling adds.

    Debian's promtool is built without Kubernetes discovery, so `promtool check config`
    cannot parse prometheus.yml here; this checks what the rules rely on instead.
    """
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert "alerts.yml" in config["rule_files"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "guichet"]
    added = {r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
    for rule in _alert_rules():
        for grouping in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            used = {label.strip() for label in grouping.split(",")} - {"le", "event_type"}
            assert used <= added, f"{rule['alert']} groups by {used - added}, never scraped"
        assert set(re.findall(r'\bjob="([^"]*)"', rule["expr"])) == {"guichet"}, rule["alert"]


# --- (e) /metrics of every service ---------------------------------------------------------


async def _scrape(spec: ServiceSpec, data_dir: Path) -> str:
    app = spec.create(data_dir=data_dir)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        assert (await client.get("/health")).status_code == 200  # one request: series exist
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.mark.parametrize("service", _service_params())
async def test_metrics_pass_promtool_lint(service: str, tmp_path: Path) -> None:
    promtool = _promtool()
    text = await _scrape(BY_NAME[service], tmp_path)
    assert 'guichet_http_requests_total{method="GET",route="/health",status="2xx"}' in text
    process = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(text.encode()), timeout=60)
    # promtool exits 1 on a parse error and 3 on lint problems, printing one line per problem
    # ("name: counter metrics should have \"_total\" suffix", ...). Every line fails the test:
    # no warning is tolerated, none being unavoidable with prometheus_client.
    problems = [line for line in (stdout + stderr).decode().splitlines() if line.strip()]
    report = f"promtool check metrics on {service} (exit {process.returncode}):\n"
    assert problems == [], report + "\n".join(problems)
    assert process.returncode == 0, report


async def test_alerts_only_use_metrics_the_services_expose(tmp_path: Path) -> None:
    exposed = {"up"}
    for spec in SERVICES:
        text = await _scrape(spec, tmp_path / spec.name)
        for family in text_string_to_metric_families(text):
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
            }.get(family.type, ("",))
            exposed.update(family.name + suffix for suffix in suffixes)
    for rule in _alert_rules():
        used = set(re.findall(r"\b(guichet_[a-z_]+|up)\{", rule["expr"]))
        assert used, f"{rule['alert']} reads no metric"
        assert used <= exposed, (
            f"{rule['alert']} reads metrics no service exposes: {used - exposed}"
        )
