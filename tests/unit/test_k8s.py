"""The Kubernetes manifests (deploy/k8s/): every file parses and is listed by kustomization.yaml;
the built-in kinds validate against the Kubernetes JSON schemas (strict: an unknown field is an
error; the schemas ship in the kubernetes-validate package) and the Prometheus Operator's kinds
against the part of their API we use; probes, ports, selectors and the scrape job fit the worker
and the rules; the settings are ones the worker reads and accepts; secrets are only referenced.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agents import security, settings
from streams import topics
from streams.config import Config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
# The oldest Kubernetes minor still maintained when this was written; the manifests use nothing
# newer (policy/v1 PodDisruptionBudget, apps/v1 StatefulSet).
KUBERNETES_VERSION = "1.31"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
            out.append((path.name, doc))
    return out


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, dict[str, Any]]]:
    return _docs()


def _one(docs: list[tuple[str, dict[str, Any]]], kind: str, name: str = "") -> dict[str, Any]:
    found = [
        d for _, d in docs if d["kind"] == kind and (not name or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _container(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    containers = _one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_kustomization_lists_every_manifest(docs: list[tuple[str, dict[str, Any]]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    image = _container(docs)["image"].split(":")[0]
    assert [i["name"] for i in kustomization["images"]] == [image]
    for name, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc["metadata"].get("name"), name
        assert "namespace" not in doc["metadata"], f"{name}: the namespace is the user's choice"


def test_builtin_kinds_validate_against_the_kubernetes_schemas(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    checked = set()
    for name, doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked.add(doc["kind"])
    assert checked == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}


def test_the_schema_check_fails_on_a_bad_manifest(docs: list[tuple[str, dict[str, Any]]]) -> None:
    """The check above can fail: an unknown field and a wrong type are refused."""
    sts = _one(docs, "StatefulSet")
    typo = {**sts, "spec": {**sts["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong = {**sts, "spec": {**sts["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


# The part of the Prometheus Operator's monitoring.coreos.com/v1 API these manifests use, from its
# API reference (ServiceMonitor: spec.selector, spec.endpoints[] with port/path/interval/
# scrapeTimeout, spec.jobLabel; PrometheusRule: spec.groups[] of rules with record or alert,
# expr, for, labels, annotations). Anything else is refused, so a typo cannot pass.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": _LABELS, "annotations": _LABELS},
    "additionalProperties": False,
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": _LABELS},
                        "additionalProperties": False,
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "oneOf": [
                                            {"required": ["record"]},
                                            {"required": ["alert"]},
                                        ],
                                        "additionalProperties": False,
                                        "properties": {
                                            "record": {"type": "string"},
                                            "alert": {"type": "string"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": _LABELS,
                                            "annotations": _LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def test_prometheus_operator_kinds_validate_against_their_api(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    seen = set()
    for name, doc in docs:
        if doc["kind"] not in CRD_KINDS:
            continue
        validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[doc["kind"]])
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
        assert not errors, f"{name}:\n" + "\n".join(errors)
        seen.add(doc["kind"])
    assert seen == CRD_KINDS
    bad = _one(docs, "ServiceMonitor")
    bad = {**bad, "spec": {**bad["spec"], "endpoint": bad["spec"]["endpoints"]}}
    assert not jsonschema.Draft202012Validator(CRD_SCHEMAS["ServiceMonitor"]).is_valid(bad)


def test_prometheus_rule_holds_the_groups_of_the_rule_files(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    rule = _one(docs, "PrometheusRule")
    files = [RULES_DIR / "recording.yml", RULES_DIR / "alerts.yml"]
    assert sorted(files) == sorted(RULES_DIR.glob("*.yml"))
    groups = [g for path in files for g in yaml.safe_load(path.read_text())["groups"]]
    assert len(groups) >= 6
    assert rule["spec"]["groups"] == groups


def _served_paths() -> set[str]:
    views = (REPO / "agents" / "views.py").read_text()
    return set(re.findall(r'@app\.page\("([^"]+)"\)', views))


def test_probes_ask_the_workers_health_endpoint_on_its_port(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    served = _served_paths()
    assert "/health" in served
    probes = [container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")]
    for probe in probes:
        get = probe["httpGet"]
        assert get["path"].split("?")[0] == "/health"
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port in ports.values()
    # readiness waits for the partitions' tables (agents/views.py: ?ready=1 answers 503 before)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health?ready=1"
    env = _one(docs, "ConfigMap", "engagement-worker-env")["data"]
    assert int(env["ENGAGEMENT_WEB_PORT"]) == ports["http"]


def test_services_and_the_servicemonitor_reach_the_workers_metrics(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    sts = _one(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert _matches(sts["spec"]["selector"]["matchLabels"], pod_labels)
    container_ports = {p["name"] for p in _container(docs)["ports"]}
    services = [d for _, d in docs if d["kind"] == "Service"]
    for svc in services:
        assert _matches(svc["spec"]["selector"], pod_labels), svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports, svc["metadata"]["name"]
    headless = _one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"

    monitor = _one(docs, "ServiceMonitor")
    selected = [
        s
        for s in services
        if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert len(selected) == 1, "each worker must be scraped through exactly one Service"
    service = selected[0]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] in _served_paths()
    # The Prometheus job is the Service's name (no jobLabel): the one the alert rules select.
    assert "jobLabel" not in monitor["spec"]
    import tomllib

    rules_cfg = tomllib.loads((REPO / "deploy" / "prometheus" / "rules.toml").read_text())
    assert service["metadata"]["name"] == rules_cfg["common"]["worker_job"]

    pdb = _one(docs, "PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)


def test_the_rocksdb_volume_is_the_workers_data_dir(docs: list[tuple[str, dict[str, Any]]]) -> None:
    sts = _one(docs, "StatefulSet")
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in _container(docs)["volumeMounts"]}
    env = _one(docs, "ConfigMap", "engagement-worker-env")["data"]
    data_mounts = [name for name, path in mounts.items() if path == env["ENGAGEMENT_DATA_DIR"]]
    assert data_mounts and data_mounts[0] in claims
    resources = _container(docs)["resources"]
    assert resources["requests"]["memory"] and resources["requests"]["cpu"]
    assert resources["limits"]["memory"]


def test_the_metric_configuration_is_the_default_one_and_mounted_where_the_worker_reads_it(
    docs: list[tuple[str, dict[str, Any]]],
) -> None:
    config_map = _one(docs, "ConfigMap", "engagement-metrics-config")
    text = config_map["data"]["metrics.toml"]
    import tomllib

    # every metric key spelled out (the worker's own settings come from the environment)
    assert set(tomllib.loads(text)) == set(Config.KEYS) - {"worker"}
    assert Config.from_toml_text(text, "metrics.toml") == Config()

    sts = _one(docs, "StatefulSet")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mount = next(m for m in _container(docs)["volumeMounts"] if m["name"] == volume["name"])
    env = _one(docs, "ConfigMap", "engagement-worker-env")["data"]
    assert env["ENGAGEMENT_CONFIG"] == f"{mount['mountPath']}/metrics.toml"


def _env(docs: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    container = _container(docs)
    names = [r["configMapRef"]["name"] for r in container["envFrom"]]
    data: dict[str, str] = {}
    for name in names:
        data.update(_one(docs, "ConfigMap", name)["data"])
    return data, container["env"]


def test_every_variable_is_a_setting_the_worker_reads_and_accepts(
    docs: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    data, env = _env(docs)
    known = set(settings.ENV.values()) | set(settings.TOML_TOPIC_KEYS.values())
    known |= set(security.KAFKA_ENV) | set(security.REDIS_ENV)
    known |= {topics.ENV_PREFIX, topics.ENV_INPUT_PARTITIONS, topics.ENV_OUTPUT_PARTITIONS}
    known |= {topics.ENV_REPLICATION_FACTOR, "ENGAGEMENT_HEALTH_REFRESH_SECONDS"}
    names = set(data) | {e["name"] for e in env}
    assert not names - known, f"variables the worker does not read: {sorted(names - known)}"

    # The real settings loader accepts them (the file and the secrets stand in for the mounts).
    config = tmp_path / "metrics.toml"
    config.write_text(_one(docs, "ConfigMap", "engagement-metrics-config")["data"]["metrics.toml"])
    stand_ins = {"ENGAGEMENT_CONFIG": str(config), "ENGAGEMENT_WEB_HOST": "10.1.2.3"}
    stand_ins |= {e["name"]: "stand-in" for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    loaded = settings.Settings.load(env={**data, **stand_ins})
    assert loaded.web_port == int(data["ENGAGEMENT_WEB_PORT"])
    assert loaded.data_dir == data["ENGAGEMENT_DATA_DIR"]
    assert loaded.partitions == int(data["ENGAGEMENT_INPUT_PARTITIONS"])
    assert loaded.web_url == "http://10.1.2.3:6066"  # what the pod registers for its peers
    from_pod = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in env
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert from_pod == {
        "ENGAGEMENT_WEB_HOST": "status.podIP",
        "ENGAGEMENT_WORKER_ID": "metadata.name",
    }


_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|USERNAME|_KEY$|KEYFILE", re.IGNORECASE)


def test_secrets_are_referenced_never_included(docs: list[tuple[str, dict[str, Any]]]) -> None:
    assert not [d for _, d in docs if d["kind"] == "Secret"]
    data, env = _env(docs)
    for name, value in data.items():
        assert not _SECRET_NAME.search(name), f"ConfigMap holds {name}"
        assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{name} has credentials in a URL"
    referenced = [e for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    assert {e["name"] for e in referenced} >= {
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "REDIS_PASSWORD",
    }
    for e in env:
        if _SECRET_NAME.search(e["name"]):
            assert "value" not in e and e in referenced, f"{e['name']} must come from a Secret"
    # the raw text too: no manifest carries a literal password-like value
    for path in K8S.glob("*.yaml"):
        for line in path.read_text().splitlines():
            assert not re.search(
                r"(password|secret|token)\s*[:=]\s*\S", line.split("#")[0], re.I
            ) or ("secretKeyRef" in line or "key:" in line or "name:" in line), (
                f"{path.name}: {line.strip()}"
            )
