"""`kubectl apply -k deploy/kubernetes` against the API emulator (tests/support/kubeapi, its own
process), with the real kubectl: every object is accepted, a second apply changes nothing, and
what kubectl reads back is what the manifests say. (Schema validation is in tests/unit/test_deploy.py:
the emulator does not validate objects.)"""

from __future__ import annotations

import json
from pathlib import Path



DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def test_apply_k_is_clean_and_idempotent(kubeapi):
    api = kubeapi
    first = api.kubectl("apply", "-k", str(DEPLOY)).splitlines()
    assert sorted(line.split()[0] for line in first) == sorted([
        "namespace/ingressd", "serviceaccount/ingressd", "role.rbac.authorization.k8s.io/ingressd",
        "clusterrole.rbac.authorization.k8s.io/ingressd", "rolebinding.rbac.authorization.k8s.io/ingressd",
        "clusterrolebinding.rbac.authorization.k8s.io/ingressd", "service/ingressd", "service/ingressd-metrics",
        "deployment.apps/ingressd", "poddisruptionbudget.policy/ingressd", "ingressclass.networking.k8s.io/ingressd"])
    assert all(line.endswith(" created") for line in first), first
    again = api.kubectl("apply", "-k", str(DEPLOY)).splitlines()
    assert len(again) == len(first) and not any(line.endswith(" created") for line in again), again

    deployment = json.loads(api.kubectl("get", "deployment", "ingressd", "-n", "ingressd", "-o", "json"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["serve", "--kubernetes"] and deployment["spec"]["replicas"] == 2
    ingress_class = json.loads(api.kubectl("get", "ingressclass", "ingressd", "-o", "json"))
    assert ingress_class["spec"]["controller"] == "ingressd.io/ingress-controller"
    role = json.loads(api.kubectl("get", "clusterrole", "ingressd", "-o", "json"))
    assert any("ingresses/status" in rule["resources"] for rule in role["rules"])
    service = json.loads(api.kubectl("get", "service", "ingressd", "-n", "ingressd", "-o", "json"))
    assert service["spec"]["type"] == "LoadBalancer" and service["spec"]["externalTrafficPolicy"] == "Local"
