"""Certificates as Secrets in the API: pebble (a real ACME server) validating HTTP-01 through the
ingressd under test, which runs with --kubernetes against the API emulator (objects by kubectl)."""

from __future__ import annotations

import base64
import json

import pytest

from acme_pebble import FixedPortIngressd, Pebble, leaf, needs_pebble, served_leaf
from support import manifests as m
from support.ingressd import free_port
from support.wait import wait_until

pytestmark = [needs_pebble, pytest.mark.timeout(180)]

CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterissuers.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Cluster
  names: {kind: ClusterIssuer, plural: clusterissuers, singular: clusterissuer, listKind: ClusterIssuerList}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: issuers.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Issuer, plural: issuers, singular: issuer, listKind: IssuerList}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
"""


def secret(kubeapi, name, namespace="default"):
    status, body = kubeapi.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return body if status == 200 else None


def issued(kubeapi, name):
    doc = secret(kubeapi, name)
    if doc is None or (doc["metadata"].get("annotations") or {}).get("ingressd.io/temporary-certificate") == "true":
        return None
    return doc


def test_certificate_issued_by_pebble_is_written_as_a_secret_and_foreign_secrets_are_left_alone(
        kubeapi, backend, tmp_path, ca):
    """emulator: CRDs (issuers appear after ingressd started), create/update with resourceVersion,
    label selectors (the managed Secrets are listed by label)."""
    ports = (free_port(), free_port(), free_port())
    pebble = Pebble(tmp_path / "pebble", ports[0]).start()
    inst = None
    try:
        foreign_cert = ca.issue_cert("foreign.example.com")
        foreign = m.tls_secret("foreign-tls", foreign_cert.cert_chain_pems[0].bytes(), foreign_cert.private_key_pem.bytes())
        kubeapi.apply(m.dump([*backend.services("a"), foreign,
                              m.ingress("plain", [m.rule("plain.example.com", m.path("/", "svc-a"))])]))
        foreign_rv = secret(kubeapi, "foreign-tls")["metadata"]["resourceVersion"]
        inst = FixedPortIngressd(tmp_path / "unused", tmp_path / "run",
                                 ["--kubernetes", "--kubeconfig", str(kubeapi.kubeconfig), "--workers", "1",
                                  "--watch-ingress-without-class"], ports).start()
        # cert-manager's CRDs and the issuer appear while ingressd runs
        kubeapi.apply(CRDS)
        issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "pebble"},
                  "spec": {"acme": {"server": pebble.directory, "email": "ops@example.com",
                                    "privateKeySecretRef": {"name": "pebble-account"},
                                    "caBundle": base64.b64encode(pebble.ca_file.read_bytes()).decode(),
                                    "solvers": [{"http01": {"ingress": {"class": "ingressd"}}}]}}}
        annotations = {"cert-manager.io/cluster-issuer": "pebble"}
        kubeapi.apply(m.dump([issuer,
                              m.ingress("site", [m.rule("site.example.com", m.path("/", "svc-a"))],
                                        tls=[(["site.example.com"], "site-tls")], annotations=annotations),
                              m.ingress("taken", [m.rule("foreign.example.com", m.path("/", "svc-a"))],
                                        tls=[(["foreign.example.com"], "foreign-tls")], annotations=annotations)]))
        doc = wait_until(lambda: issued(kubeapi, "site-tls"), timeout=90, interval=0.2, message="Secret site-tls")
        assert doc["type"] == "kubernetes.io/tls"
        assert doc["metadata"]["labels"]["ingressd.io/managed-by"] == "ingressd"
        cert = leaf(base64.b64decode(doc["data"]["tls.crt"]))
        served = wait_until(lambda: (c := served_leaf(ports[1], "site.example.com", pebble.root_pem()))
                            .serial_number == cert.serial_number and c, timeout=10, interval=0.1)
        assert served.serial_number == cert.serial_number
        # the ACME account key is in the issuer's privateKeySecretRef Secret, owned by ingressd
        status, listed = kubeapi.request("GET", "/api/v1/secrets?labelSelector=ingressd.io%2Fmanaged-by%3Dingressd")
        names = {s["metadata"]["name"] for s in listed["items"]}
        assert "pebble-account" in names and "site-tls" in names
        # per-certificate state is kept in the API (written after the Secret: wait for it)
        state = wait_until(lambda: (r := kubeapi.request("GET", "/api/v1/namespaces/default/configmaps/"
                                                         "ingressd-certificates"))[0] == 200 and r[1],
                           timeout=30, interval=0.2, message="ConfigMap ingressd-certificates")
        assert json.loads(state["data"]["certificates.json"])
        # the Secret someone else owns was never overwritten (nor was it written at all)
        now = secret(kubeapi, "foreign-tls")
        assert now["data"] == foreign["data"] and now["metadata"]["resourceVersion"] == foreign_rv
        assert "Secret default/foreign-tls: this Secret is served as written; ingressd does not manage" in inst.stderr()
    finally:
        if inst is not None:
            inst.stop()
        pebble.close()
