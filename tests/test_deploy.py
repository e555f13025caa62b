"""deploy/: what the compose file and the Kubernetes manifests give the hub's container."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml

from .support.harness import ROOT

DEPLOY = ROOT / "deploy"


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    text = (DEPLOY / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", final, flags=re.M | re.S):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value
    return env


def loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def compose_env() -> dict[str, str]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env: dict[str, str] = compose["services"]["hub"]["environment"]
    return {**image_env(), **{k: str(v) for k, v in env.items()}}


def k8s_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def k8s_env() -> dict[str, str]:
    """Image ENV, ConfigMap hub-env, the example Secret's keys and the container's env."""
    env = image_env()
    for doc in k8s_docs("configmap.yaml"):
        if doc["metadata"]["name"] == "hub-env":
            env |= doc["data"]
    (secret,) = k8s_docs("secret.example.yaml")
    env |= secret["stringData"]
    (deployment,) = k8s_docs("deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef", {})
        assert ref.get("name") != "hub-secrets" or ref["key"] in secret["stringData"], item
        env[item["name"]] = item.get("value", f"<secret {ref.get('key')}>")
    return env


def test_the_ops_api_token_is_set_wherever_the_hub_listens_beyond_loopback() -> None:
    for where, env in (("compose", compose_env()), ("kubernetes", k8s_env())):
        assert not loopback(env["HUB_HTTP_HOST"]), where
        assert env.get("HUB_OPS_TOKEN"), f"{where}: /api would answer 403 without HUB_OPS_TOKEN"
    # compose refuses to start without it rather than run with an ops API that answers 403
    assert compose_env()["HUB_OPS_TOKEN"].startswith("${HUB_OPS_TOKEN:?")
    # the Deployment names it, so a Secret without the key stops the rollout
    (deployment,) = k8s_docs("deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {e["name"]: e for e in container.get("env", [])}
    assert names["HUB_OPS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub-secrets",
        "key": "HUB_OPS_TOKEN",
    }


def env_refs(hub_yaml: str) -> set[str]:
    """The NAMEs of the `env:NAME` secret references in a hub.yaml's connection options."""
    connections = yaml.safe_load(hub_yaml)["connections"].values()
    values = [v for c in connections for v in (c.get("options") or {}).values()]
    return {v.removeprefix("env:") for v in values if isinstance(v, str) and v.startswith("env:")}


def test_every_secret_reference_of_the_deployed_configs_is_provided() -> None:
    compose_refs = env_refs((DEPLOY / "hub.yaml").read_text())
    (config,) = (d for d in k8s_docs("configmap.yaml") if d["metadata"]["name"] == "hub-config")
    k8s_refs = env_refs(config["data"]["hub.yaml"])
    assert compose_refs and k8s_refs
    assert compose_refs <= set(compose_env())
    assert k8s_refs <= set(k8s_env())


def test_the_deploy_readme_documents_the_token_and_the_database_rights() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert "HUB_OPS_TOKEN" in text
    for right in ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "advisory lock"):
        assert right in text, right


def test_the_workers_deployment_is_probed_and_scraped_on_its_metrics_listener() -> None:
    from hub.api import health, metrics

    (deployment,) = k8s_docs("workers.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"][-2:] == ["--role", "workers"]
    env = {e["name"]: e for e in container["env"]}
    port = int(env["HUB_METRICS_PORT"]["value"])
    assert not loopback(env["HUB_METRICS_HOST"]["value"])
    # beyond loopback /metrics answers 403 without the token: the Deployment names it
    assert env["HUB_OPS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hub-secrets"
    (named,) = container["ports"]
    assert named["containerPort"] == port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    # what the metrics listener serves (hub.api.app.create_metrics_app)
    served = {r.path for router in (health.router, metrics.router) for r in router.routes}  # type: ignore[attr-defined]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] in served
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == named["name"] and get["path"] in served, probe
    # Service `hub` (webhooks) must not pick these pods: they have no HTTP API
    (service,) = k8s_docs("service.yaml")
    selector = service["spec"]["selector"].items()
    assert not selector <= pod["metadata"]["labels"].items()

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["workers"]
    assert compose["command"][-2:] == ["--role", "workers"]
    assert not loopback(compose["environment"]["HUB_METRICS_HOST"])
    assert compose["environment"]["HUB_OPS_TOKEN"].startswith("${HUB_OPS_TOKEN:?")


def test_the_image_can_export_spans() -> None:
    # HUB_OTEL_ENDPOINT needs the otel extra: the image has it, off until the variable is set
    text = (DEPLOY / "Dockerfile").read_text()
    assert "pip install --no-cache-dir '.[otel]'" in text
    assert "HUB_OTEL_ENDPOINT" not in image_env()
