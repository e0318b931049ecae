"""deploy/kubernetes and the Containerfile: they render with the real `kubectl kustomize`, pass the
Kubernetes schemas (kubernetes-validate, strict: no unknown fields) for the oldest and newest
supported versions, and agree with ingressd itself (flags, ports, probe paths, labels, user).
`kubectl apply -k` against the API emulator is in tests/integration."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ingressd.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OLDEST_KUBERNETES = "1.25"  # policy/v1 PDBs, the safe ip_unprivileged_port_start sysctl (1.22+)


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    return doc


def test_renders_every_object_the_issue_asks_for(rendered):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert kinds == [("ClusterRole", "ingressd"), ("ClusterRoleBinding", "ingressd"), ("Deployment", "ingressd"),
                     ("IngressClass", "ingressd"), ("Namespace", "ingressd"), ("PodDisruptionBudget", "ingressd"),
                     ("Role", "ingressd"), ("RoleBinding", "ingressd"), ("Service", "ingressd"),
                     ("Service", "ingressd-metrics"), ("ServiceAccount", "ingressd")]
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in rendered:
        if doc["kind"] == "IngressClass":  # cluster-scoped, unknown to Debian kubectl 1.20's old kustomize,
            continue  # which sets a namespace on it (the API server drops it)
        assert doc["metadata"].get("namespace") == (None if doc["kind"] in cluster_scoped else "ingressd"), doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "ingressd", doc


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_schema_valid(rendered, version):
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_file_is_in_the_kustomization():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


def container(rendered) -> dict:
    (c,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def test_deployment_args_are_ingressd_flags(rendered):
    c = container(rendered)
    assert c["image"].startswith("ingressd:")
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = [a.replace("$(POD_NAMESPACE)", "ingressd") for a in c["args"]]
    assert args[:2] == ["serve", "--kubernetes"]
    parsed = build_parser().parse_args(args)  # exits (fails the test) on an unknown flag
    assert parsed.command == "serve" and parsed.kubernetes
    assert parsed.publish_service == "ingressd/ingressd"  # the LoadBalancer Service below
    assert parsed.election_id == "ingressd-leader"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": parsed.http_port, "https": parsed.https_port, "metrics": parsed.metrics_port}


def test_probes_use_the_metrics_ports_health_endpoints(rendered):
    c = container(rendered)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    app = (ROOT / "ingressd" / "app.py").read_text()
    assert '"/readyz"' in app and '"/healthz"' in app  # served by the admin port (app.serve)


def test_deployment_is_locked_down(rendered):
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(rendered, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in pod["securityContext"]["sysctls"]
    c = container(rendered)
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_selectors_match_the_pods(rendered):
    deployment = one(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container(rendered)["ports"]}

    def selects(selector: dict) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert selects(anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"]
                   ["matchLabels"])
    public = one(rendered, "Service", "ingressd")
    assert public["spec"]["type"] == "LoadBalancer" and public["spec"]["externalTrafficPolicy"] == "Local"
    assert {(p["port"], p["targetPort"]) for p in public["spec"]["ports"]} == {(80, "http"), (443, "https")}
    metrics = one(rendered, "Service", "ingressd-metrics")
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    for svc in (public, metrics):
        assert selects(svc["spec"]["selector"])
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names


def test_ingress_class_and_bindings(rendered):
    assert one(rendered, "IngressClass")["spec"] == {"controller": "ingressd.io/ingress-controller"}
    account = one(rendered, "ServiceAccount")["metadata"]
    for kind, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(rendered, kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role,
                                      "name": one(rendered, role)["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                        "namespace": account["namespace"]}]


def test_containerfile_runs_ingressd_unprivileged(rendered):
    text = (ROOT / "Containerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert froms and all(re.match(r"python:3\.1[1-9]-slim", image) for image in froms)
    (user,) = [line.split()[1] for line in instructions if line.startswith("USER ")]
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    (expose,) = [line.split()[1:] for line in instructions if line.startswith("EXPOSE ")]
    assert sorted(map(int, expose)) == sorted(p["containerPort"] for p in container(rendered)["ports"])
    (entrypoint,) = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.split(None, 1)[1]) == ["ingressd"]
