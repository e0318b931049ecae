"""Client trust: forwarded headers and PROXY protocol settings (ingress-nginx's ConfigMap keys)."""

from __future__ import annotations

import ipaddress

import pytest

from ingressd.cli import _settings, build_parser
from ingressd.config import ClientTrust, parse_cidrs


def test_defaults_trust_nobody_as_ingress_nginx():
    trust = ClientTrust()
    assert not trust.use_forwarded_headers and not trust.enable_real_ip and not trust.use_proxy_protocol
    assert not trust.compute_full_forwarded_for and not trust.realip
    assert trust.forwarded_for_header == "X-Forwarded-For"
    assert trust.networks == (ipaddress.ip_network("0.0.0.0/0"),)


def test_cidrs_parse_and_bad_ones_are_named():
    assert parse_cidrs("10.0.0.0/8, 192.168.1.1,fd00::/8") == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"), ipaddress.ip_network("fd00::/8"))
    with pytest.raises(ValueError, match="'10.0.0.300' is not an IP address or CIDR"):
        ClientTrust(proxy_real_ip_cidr=("10.0.0.300",))
    with pytest.raises(ValueError, match="not a header name"):
        ClientTrust(forwarded_for_header="X-Bad: header")


def test_command_line_flags():
    args = build_parser().parse_args([
        "serve", "--manifests", "m", "--use-forwarded-headers", "--forwarded-for-header", "X-Client-IP",
        "--compute-full-forwarded-for", "--enable-real-ip", "--proxy-real-ip-cidr", "10.0.0.0/8,172.16.0.0/12",
        "--use-proxy-protocol"])
    assert _settings(args).trust == ClientTrust(
        use_forwarded_headers=True, forwarded_for_header="X-Client-IP", compute_full_forwarded_for=True,
        enable_real_ip=True, proxy_real_ip_cidr=("10.0.0.0/8", "172.16.0.0/12"), use_proxy_protocol=True)
    assert _settings(build_parser().parse_args(["serve", "--manifests", "m"])).trust == ClientTrust()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--manifests", "m", "--proxy-real-ip-cidr", "nope"])
