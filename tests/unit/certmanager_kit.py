"""Builders for the certificate manager's unit tests: manifest documents through ``parse_object``."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingressd.certmanager.issuers import parse_cluster_issuer, parse_issuer
from ingressd.config import Snapshot
from ingressd.objects import parse_object

CM = "cert-manager.io/"


def acme_spec(server: str = "https://acme.test/dir", email: str = "ops@example.com", **extra) -> dict:
    return {"acme": {"server": server, "email": email, "privateKeySecretRef": {"name": "acct"},
                     "solvers": [{"http01": {"ingress": {}}}], **extra}}


def cluster_issuer(name: str, spec: dict | None = None) -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
            "spec": acme_spec() if spec is None else spec}


def issuer(name: str, namespace: str, spec: dict | None = None) -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": name, "namespace": namespace},
            "spec": acme_spec() if spec is None else spec}


def ingress(name: str, tls: list[tuple[list[str], str | None]], annotations: dict | None = None,
            namespace: str = "default", class_name: str | None = None, created: str | None = None) -> dict:
    hosts = [h for entry in tls for h in entry[0]] or ["x.example.com"]
    meta: dict = {"name": name, "namespace": namespace, "annotations": dict(annotations or {})}
    if created:
        meta["creationTimestamp"] = created
    spec: dict = {"rules": [{"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "svc", "port": {"number": 80}}}}]}} for h in dict.fromkeys(hosts)],
        "tls": [({"hosts": hs} | ({"secretName": s} if s else {})) for hs, s in tls]}
    if class_name:
        spec["ingressClassName"] = class_name
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def tls_secret(name: str, namespace: str, cert_pem: bytes, key_pem: bytes) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()}}


def parse(doc: dict, origin: str | None = None) -> list:
    """``parse_object``, and the issuer kinds without registering them globally (the program does
    that; a unit test must not change what other tests' ``parse_object`` sees)."""
    parser = {"ClusterIssuer": parse_cluster_issuer, "Issuer": parse_issuer}.get(doc.get("kind"))
    if parser is not None and doc.get("apiVersion") == "cert-manager.io/v1":
        return [parser(doc, origin)]
    return parse_object(doc, origin)


def snapshot(*docs: dict, origin: str = "/manifests/site.yaml") -> Snapshot:
    objects = []
    for doc in docs:
        objects += parse(doc, origin)
    return Snapshot(tuple(objects))


def ca_pair(ca: bool = True) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
