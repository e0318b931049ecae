"""The ``ingressd`` command: serve, check, routes, certs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys

from . import __version__
from .config import ClientTrust, Settings, parse_cidrs
from .logs import configure_logging
from .workers import default_worker_count
from .diagnostics import ERROR
from .sources import SourceOptions, open_source, read_once
from .translate import translate

_SERVICE_RE = re.compile(r"^([a-z0-9-]+/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?:([0-9]+|[a-z0-9-]+)$")
_SECRET_RE = re.compile(r"^([a-z0-9-]+/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _service(value: str) -> str:
    if not _SERVICE_RE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/NAME:PORT")
    return value


def _secret(value: str) -> str:
    if not _SECRET_RE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/SECRET")
    return value


def _cidrs(value: str) -> tuple[str, ...]:
    try:
        parse_cidrs(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _header_name(value: str) -> str:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a header name")
    return value


def _configmap(value: str) -> str:
    namespace, slash, name = value.partition("/")
    if value and (not slash or not namespace or not name or "/" in name):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/NAME")
    return value


_OBJECT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _namespaced_name(value: str) -> str:
    if not _OBJECT_RE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/NAME")
    return value


def _status_address(value: str) -> str:
    from .kube.status import parse_status_addresses

    try:
        parse_status_addresses([value])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _lease_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 3 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds from 3 to 3600")
    return seconds


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number")
    return int(value)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--manifests", metavar="DIR",
                       help="directory of Kubernetes YAML/JSON manifests (read recursively, watched)")
    where.add_argument("--kubernetes", action="store_true",
                       help="watch the Kubernetes API (in a pod: its service account; else --kubeconfig, "
                            "$KUBECONFIG or ~/.kube/config)")
    cluster = parser.add_argument_group("the Kubernetes API (with --kubernetes)")
    cluster.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    cluster.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current-context)")
    cluster.add_argument("--watch-namespace", action="append", dest="watch_namespaces", metavar="NAMESPACE",
                         help="read Ingresses, Services, EndpointSlices, Secrets and Issuers of this namespace "
                              "only (repeatable; default: all namespaces)")
    parser.add_argument("--certificates", action=argparse.BooleanOptionalAction, default=True,
                        help="manage certificates: read ClusterIssuers/Issuers and write certificate Secrets "
                             "(default: on; --no-certificates only serves the Secrets that exist)")
    parser.add_argument("--watch-ingress-without-class", action=argparse.BooleanOptionalAction, default=None,
                        help="also serve Ingresses with no class (default: on for --manifests, off for "
                             "--kubernetes, as ingress-nginx)")
    parser.add_argument("--configmap", type=_configmap, default="ingress-nginx/ingress-nginx-controller",
                        metavar="NAMESPACE/NAME",
                        help="ingress-nginx's controller ConfigMap, read for its global settings (see "
                             "deploy/migration.md; default: ingress-nginx/ingress-nginx-controller)")
    parser.add_argument("--ingress-class", action="append", dest="ingress_classes", metavar="NAME",
                        help="serve Ingresses of this class (repeatable; default: ingressd)")
    parser.add_argument("--default-backend-service", type=_service, metavar="NAMESPACE/NAME:PORT",
                        help="service for requests no rule matches (default: a built-in 404)")
    group = parser.add_argument_group("client trust (ingress-nginx ConfigMap keys of the same names)")
    group.add_argument("--use-forwarded-headers", action=argparse.BooleanOptionalAction, default=False,
                       help="believe X-Forwarded-For/-Proto/-Host/-Port from the trusted proxies (default: off)")
    group.add_argument("--forwarded-for-header", type=_header_name, default="X-Forwarded-For", metavar="NAME",
                       help="the header giving the client address (default: X-Forwarded-For)")
    group.add_argument("--compute-full-forwarded-for", action=argparse.BooleanOptionalAction, default=False,
                       help="append the peer to a trusted X-Forwarded-For instead of replacing it (default: off)")
    group.add_argument("--enable-real-ip", action=argparse.BooleanOptionalAction, default=False,
                       help="take only the client address from --forwarded-for-header (default: off)")
    group.add_argument("--proxy-real-ip-cidr", type=_cidrs, default=("0.0.0.0/0",), metavar="CIDR[,CIDR...]",
                       help="the trusted proxies (default: 0.0.0.0/0, as ingress-nginx)")
    group.add_argument("--use-proxy-protocol", action=argparse.BooleanOptionalAction, default=False,
                       help="connections start with a PROXY protocol v1/v2 header (default: off)")
    parser.add_argument("--default-ssl-certificate", type=_secret, metavar="NAMESPACE/SECRET",
                        help="certificate for unknown SNI (default: a generated self-signed one)")


def _readable_file(value: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise argparse.ArgumentTypeError(f"{value!r} is not a readable file")
    return os.path.abspath(value)


def _add_certificate_arguments(parser: argparse.ArgumentParser, state_dir_required: bool = False) -> None:
    from .certmanager.issuers import LETSENCRYPT_PRODUCTION, LETSENCRYPT_STAGING

    group = parser.add_argument_group("certificates (cert-manager and kube-lego annotations)")
    group.add_argument("--state-dir", metavar="DIR", required=state_dir_required,
                       help="where managed certificates (Secret manifests) and ACME account keys are kept")
    group.add_argument("--default-issuer", metavar="CLUSTERISSUER",
                       help="the ClusterIssuer for Ingresses annotated kubernetes.io/tls-acme: \"true\"")
    group.add_argument("--acme-email", metavar="EMAIL",
                       help="define the ACME ClusterIssuer 'ingressd-acme' (the default issuer unless "
                            "--default-issuer is given)")
    group.add_argument("--acme-server", metavar="URL", default=LETSENCRYPT_PRODUCTION,
                       help=f"its ACME directory (default: Let's Encrypt production; staging: {LETSENCRYPT_STAGING})")
    group.add_argument("--acme-ca-bundle", metavar="FILE", type=_readable_file,
                       help="PEM file of CA certificates to trust for --acme-server (a private ACME CA)")


def _cert_settings(args: argparse.Namespace):
    from .certmanager import CertSettings

    return CertSettings(state_dir=args.state_dir, default_issuer=args.default_issuer, acme_email=args.acme_email,
                        acme_server=args.acme_server, acme_ca_bundle=args.acme_ca_bundle)


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    from .kube.election import DEFAULT_ELECTION_ID

    group = parser.add_argument_group("in a cluster: leader election and Ingress status")
    group.add_argument("--election-id", default=DEFAULT_ELECTION_ID, metavar="NAME",
                       help="the Lease the replicas elect their leader on, in the pod's namespace (POD_NAMESPACE); "
                            "only the leader orders certificates and writes Ingress status "
                            f"(default: {DEFAULT_ELECTION_ID})")
    group.add_argument("--election-ttl", type=_lease_seconds, default=15.0, metavar="SECONDS",
                       help="lease duration: a leader that stops renewing is replaced this long after its last "
                            "renewal (default 15; it renews every 2/15 of it and gives up after 2/3 of it)")
    group.add_argument("--publish-service", type=_namespaced_name, metavar="NAMESPACE/NAME",
                       help="write this Service's load-balancer addresses into the status of the Ingresses served")
    group.add_argument("--publish-status-address", action="append", type=_status_address, metavar="ADDR",
                       dest="publish_status_addresses",
                       help="write this IP or host name into their status instead (repeatable, or comma-separated)")


def _api_address(value: str) -> tuple[str | None, int]:
    host, colon, port = value.rpartition(":")
    if not colon:
        host, port = "", value
    host = host.strip("[]")
    return (host or None, _port(port))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingressd", description="HTTPS ingress for Kubernetes Ingress objects.")
    parser.add_argument("--version", action="version", version=f"ingressd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve HTTP and HTTPS for the manifests")
    _add_source_arguments(serve)
    serve.add_argument("--listen", metavar="ADDR", default=None, help="address to listen on (default: all)")
    serve.add_argument("--http-port", type=_port, default=80)
    serve.add_argument("--https-port", type=_port, default=443)
    serve.add_argument("--metrics-port", type=_port, default=10254)
    serve.add_argument("--max-worker-connections", type=_positive, default=16384, metavar="N",
                       help="client connections per worker; more are closed at once and counted in "
                            "ingressd_connections_refused_total (default: 16384, as ingress-nginx)")
    serve.add_argument("--hsts", action=argparse.BooleanOptionalAction, default=True,
                       help="send Strict-Transport-Security on HTTPS responses (default: on)")
    serve.add_argument("--http2", action=argparse.BooleanOptionalAction, default=True,
                       help="offer HTTP/2 (ALPN h2, preferred, and http/1.1) on the HTTPS listener, as "
                            "ingress-nginx's use-http2 (default: on; --no-http2 offers http/1.1 only)")
    serve.add_argument("--h2c", action="store_true",
                       help="serve cleartext HTTP/2 with prior knowledge on the HTTP port too: a connection "
                            "opening with the HTTP/2 preface is HTTP/2, any other HTTP/1.1 (no Upgrade: h2c, "
                            "as nginx; default: off)")
    serve.add_argument("--metrics-per-undefined-host", action="store_true",
                       help="count requests for hosts no Ingress defines under their own label")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--workers", type=int, default=0, metavar="N",
                       help="data-plane processes sharing the ports (default: the number of CPUs; "
                            "1 serves from a single process)")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                       help="one line per request (and per closed websocket) on stdout (default: on)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="access log format: ingress-nginx's default upstream format, or JSON")
    serve.add_argument("--enable-ssl-passthrough", action="store_true",
                       help="honour the ssl-passthrough annotation (as ingress-nginx's flag): every HTTPS "
                            "connection is read up to its SNI first, those for passthrough hosts go to the "
                            "backend undecrypted")
    serve.add_argument("--proxy-api", type=_api_address, metavar="[ADDR:]PORT",
                       help="serve configurable-http-proxy's REST API for JupyterHub here (token: "
                            "CONFIGPROXY_AUTH_TOKEN); its routes go under the hosts of Ingresses annotated "
                            "ingressd.io/proxy-api: \"true\"")
    serve.add_argument("--proxy-api-host-routing", action="store_true",
                       help="with --proxy-api: the first path segment of a Hub route is its host "
                            "(JupyterHub's subdomain_host; CHP's --host-routing)")
    _add_certificate_arguments(serve)
    _add_cluster_arguments(serve)

    check = commands.add_parser("check", help="validate manifests; exit 1 on errors")
    _add_source_arguments(check)
    _add_certificate_arguments(check)
    routes = commands.add_parser("routes", help="print the compiled route table")
    _add_source_arguments(routes)
    certs = commands.add_parser("certs", help="list the managed certificates and their state")
    _add_source_arguments(certs)
    _add_certificate_arguments(certs)
    commands.add_parser("chp", add_help=False,
                        help="JupyterHub's proxy: configurable-http-proxy's flags and REST API "
                             "(ingressd chp --help)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        ingress_classes=tuple(args.ingress_classes or ("ingressd",)),
        default_backend_service=args.default_backend_service,
        default_ssl_certificate=args.default_ssl_certificate,
        configmap=args.configmap,
        watch_ingress_without_class=(args.watch_ingress_without_class if args.watch_ingress_without_class is not None
                                     else not args.kubernetes),
        trust=ClientTrust(
            use_forwarded_headers=args.use_forwarded_headers, forwarded_for_header=args.forwarded_for_header,
            compute_full_forwarded_for=args.compute_full_forwarded_for, enable_real_ip=args.enable_real_ip,
            proxy_real_ip_cidr=args.proxy_real_ip_cidr, use_proxy_protocol=args.use_proxy_protocol),
    )


def _source_options(args: argparse.Namespace) -> SourceOptions:
    namespace, _, name = args.configmap.partition("/")
    return SourceOptions(manifests=args.manifests, state_dir=getattr(args, "state_dir", None),
                         certificates=args.certificates, kubernetes=args.kubernetes, kubeconfig=args.kubeconfig, context=args.context,
                         watch_namespaces=tuple(args.watch_namespaces or ()),
                         require=(("ConfigMap", namespace, name),) if args.configmap else ())


def _read(args: argparse.Namespace):
    """The source of the command line, read once: (source, snapshot)."""
    source = open_source(_source_options(args))
    return source, asyncio.run(read_once(source))


def _load(args: argparse.Namespace):
    return translate(_read(args)[1], _settings(args))


def cmd_check(args: argparse.Namespace) -> int:
    from .certmanager import plan

    source, snapshot = _read(args)
    config = translate(snapshot, _settings(args))
    owns = source.secrets.owns if source.secrets is not None else None
    certificates = plan(snapshot, _settings(args), _cert_settings(args), owns=owns)  # issuers, annotations
    diagnostics = list(dict.fromkeys(config.diagnostics + certificates.diagnostics))
    for diagnostic in diagnostics:
        print(diagnostic)
    errors = sum(1 for d in diagnostics if d.severity == ERROR)
    warnings = len(diagnostics) - errors
    print(f"{errors} error(s), {warnings} warning(s); {config.ingress_count} Ingress(es) served, "
          f"{len(config.table.routes())} route(s)")
    return 1 if errors else 0


def cmd_routes(args: argparse.Namespace) -> int:
    config = _load(args)
    rows = [("HOST", "PATH", "TYPE", "BACKEND", "ENDPOINTS", "TLS", "INGRESS", "OPTIONS")]
    for route in config.table.routes() + [config.table.default]:
        backend = route.backend
        if route.options.redirect is not None:
            target, endpoints = f"redirect {route.options.redirect.code}", "-"
        elif backend is None:
            target, endpoints = "default-backend (404)", "-"
        else:
            target = f"{backend.namespace}/{backend.service}:{backend.port}"
            endpoints = (f"503: {backend.error}" if backend.error else
                         ",".join(f"{host}:{port}" for host, port in backend.endpoints))
        cert = config.certificate_for(route.host) if route.host else None
        tls = cert.source if cert else ("default-cert" if route.https_redirect and route.host else "-")
        extra = route.options.describe()
        if route.https_redirect:
            extra = "https-redirect" if extra == "-" else extra + ",https-redirect"
        rows.append((route.host or "*", route.path or "(default)", route.path_type, target, endpoints, tls,
                     f"{route.namespace}/{route.ingress}" if route.ingress else "-", extra))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from .certmanager import certificate_rows, render

    settings, cert_settings = _settings(args), _cert_settings(args)
    if not args.kubernetes and not args.state_dir:
        print("ingressd certs: error: --state-dir is required with --manifests", file=sys.stderr)
        return 2
    source, snapshot = _read(args)
    entries = certificate_rows(snapshot, settings, cert_settings, source.secrets, source.statuses)
    print(render(entries))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import ServeOptions, serve

    configure_logging(args.log_level, args.log_format)
    options = ServeOptions(
        source=_source_options(args), listen=args.listen, http_port=args.http_port, https_port=args.https_port,
        metrics_port=args.metrics_port, settings=_settings(args), hsts=args.hsts,
        metrics_per_undefined_host=args.metrics_per_undefined_host,
        access_log=args.access_log, log_format=args.log_format, log_level=args.log_level,
        workers=args.workers or default_worker_count(), certificates=_cert_settings(args),
        election_id=args.election_id, election_ttl=args.election_ttl, publish_service=args.publish_service,
        publish_status_addresses=tuple(args.publish_status_addresses or ()),
        max_connections=args.max_worker_connections, http2=args.http2, h2c=args.h2c, proxy_api=args.proxy_api,
        proxy_api_host_routing=args.proxy_api_host_routing, ssl_passthrough=args.enable_ssl_passthrough,
        proxy_api_token=os.environ.get("CONFIGPROXY_AUTH_TOKEN") or None,
    )
    if options.proxy_api is not None and not options.proxy_api_token:
        logging.getLogger("ingressd").warning("--proxy-api without a token: set CONFIGPROXY_AUTH_TOKEN")
    try:
        import uvloop
    except ImportError:
        uvloop = None
    try:
        if uvloop is not None:
            uvloop.run(serve(options))
        else:
            asyncio.run(serve(options))
    except OSError as error:
        logging.getLogger("ingressd").error("cannot start: %s", error)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chp"]:  # CHP's own command line, parsed by its own parser
        from .chp.cli import main as chp_main

        return chp_main(argv[1:])
    args = build_parser().parse_args(argv)
    return {"serve": cmd_serve, "check": cmd_check, "routes": cmd_routes, "certs": cmd_certs}[args.command](args)
