"""The command line of ``ingressd chp`` (also installed as ``configurable-http-proxy``): CHP's flags.

Flags CHP has and ingressd does not implement are refused by name, never silently ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from ..logs import configure_logging

# configurable-http-proxy's flags that ingressd does not implement, refused by name.
UNSUPPORTED = (
    "--socket", "--ssl-protocol", "--ssl-ciphers", "--ssl-allow-rc4", "--ssl-dhparam", "--api-socket",
    "--api-ssl-key", "--api-ssl-cert", "--api-ssl-ca", "--api-ssl-request-cert", "--api-ssl-reject-unauthorized",
    "--client-ssl-key", "--client-ssl-cert", "--client-ssl-ca", "--client-ssl-request-cert",
    "--client-ssl-reject-unauthorized", "--auto-rewrite", "--change-origin", "--protocol-rewrite",
    "--metrics-socket", "--storage-backend", "--statsd-host", "--statsd-port", "--statsd-prefix",
)

LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number")
    return int(value)


def _millis(value: str) -> float:
    try:
        millis = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of milliseconds") from None
    return millis / 1000.0


def _header(value: str) -> tuple[str, str]:
    """CHP's ``--custom-header NAME:VALUE`` (both trimmed)."""
    name, colon, text = value.strip().partition(":")
    name, text = name.strip(), text.strip()
    if not colon or not name:
        raise argparse.ArgumentTypeError(f"a colon was expected in custom header: {value!r}")
    if not all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in name) or any(
            c in text for c in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"custom header {value!r} is not a valid header line")
    return name, text


def build_parser(prog: str = "ingressd chp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="configurable-http-proxy's command line and REST API, served by ingressd. "
                               "Token from the CONFIGPROXY_AUTH_TOKEN environment variable.")
    parser.add_argument("--ip", default="", help="public-facing IP of the proxy (default: all interfaces)")
    parser.add_argument("--port", type=_port, default=8000, help="public-facing port (default: 8000)")
    parser.add_argument("--api-ip", default="localhost", help="IP of the REST API (default: localhost)")
    parser.add_argument("--api-port", type=_port, help="port of the REST API (default: --port + 1)")
    parser.add_argument("--default-target", metavar="URL", help="target of the root route /")
    parser.add_argument("--error-target", metavar="URL",
                        help="ask URL/CODE?url=... for the page of a 404 (no route) or 503 (target failed)")
    parser.add_argument("--error-path", metavar="DIR", help="serve DIR/CODE.html (else DIR/error.html) as those pages")
    parser.add_argument("--ssl-key", metavar="FILE", help="serve HTTPS with this key (with --ssl-cert)")
    parser.add_argument("--ssl-cert", metavar="FILE", help="serve HTTPS with this certificate chain")
    parser.add_argument("--ssl-ca", metavar="FILE", help="CA certificates that client certificates are checked against")
    parser.add_argument("--ssl-request-cert", action="store_true", help="ask HTTPS clients for a certificate")
    parser.add_argument("--ssl-reject-unauthorized", action="store_true",
                        help="with --ssl-request-cert: refuse clients without a valid certificate")
    parser.add_argument("--redirect-port", type=_port, metavar="PORT",
                        help="answer plain HTTP on PORT with a redirect to HTTPS (needs --ssl-cert)")
    parser.add_argument("--redirect-to", type=_port, metavar="PORT",
                        help="the HTTPS port --redirect-port sends clients to (default: --port)")
    parser.add_argument("--no-x-forward", dest="x_forward", action="store_false",
                        help="add no X-Forwarded-* headers to proxied requests")
    parser.add_argument("--no-prepend-path", dest="prepend_path", action="store_false",
                        help="do not put a target's path in front of the request path")
    parser.add_argument("--no-include-prefix", dest="include_prefix", action="store_false",
                        help="cut the route's prefix off the request path")
    parser.add_argument("--insecure", action="store_true", help="do not verify https targets' certificates")
    parser.add_argument("--custom-header", type=_header, action="append", default=[], metavar="NAME:VALUE",
                        help="add this header to proxied requests (repeatable)")
    parser.add_argument("--host-routing", action="store_true", help="the first path segment of a route is its host")
    parser.add_argument("--timeout", type=_millis, metavar="MS",
                        help="milliseconds a client connection may be idle while a request is on it")
    parser.add_argument("--proxy-timeout", type=_millis, metavar="MS",
                        help="milliseconds to wait for a target's reply (default: no limit)")
    parser.add_argument("--keep-alive-timeout", type=_millis, metavar="MS",
                        help="milliseconds an idle keep-alive client connection stays open "
                             "(default: 75000, as ingress-nginx; CHP's is 5000)")
    parser.add_argument("--log-level", default="info", choices=sorted(LOG_LEVELS))
    parser.add_argument("--metrics-ip", default="", help="IP of the metrics port")
    parser.add_argument("--metrics-port", type=_port, help="serve ingressd's /metrics and status page here")
    parser.add_argument("--pid-file", metavar="FILE", help="write the process id there")
    parser.add_argument("--access-log", action="store_true",
                        help="ingressd's: one access log line per request on stdout (default: off, as CHP)")
    return parser


def refused(argv: list[str]) -> list[str]:
    """The unsupported CHP flags in ``argv`` (``--flag`` and ``--flag=value`` forms)."""
    return [arg.split("=", 1)[0] for arg in argv if arg.split("=", 1)[0] in UNSUPPORTED]


def parse(argv: list[str], prog: str = "ingressd chp"):
    from .routes import Forwarding
    from .server import ChpOptions

    parser = build_parser(prog)
    flags = refused(argv)
    if flags:
        parser.error(f"configurable-http-proxy flag(s) not implemented by ingressd: {', '.join(flags)}")
    args = parser.parse_args(argv)
    if bool(args.ssl_key) != bool(args.ssl_cert):
        parser.error("--ssl-key and --ssl-cert go together")
    if args.redirect_port is not None and not args.ssl_cert:
        parser.error("HTTPS redirection specified but certificates not provided (--redirect-port needs --ssl-cert)")
    if (args.ssl_ca or args.ssl_request_cert or args.ssl_reject_unauthorized) and not args.ssl_cert:
        parser.error("--ssl-ca, --ssl-request-cert and --ssl-reject-unauthorized need --ssl-key and --ssl-cert")
    if args.error_target and args.error_path:
        parser.error("cannot specify both --error-target and --error-path: pick one")
    host = lambda value: None if value in ("", "*") else value  # noqa: E731 (CHP: '' and '*' mean all)
    return ChpOptions(
        ip=host(args.ip), port=args.port, api_ip=host(args.api_ip),
        api_port=args.api_port if args.api_port is not None else args.port + 1,
        token=os.environ.get("CONFIGPROXY_AUTH_TOKEN") or None, default_target=args.default_target,
        host_routing=args.host_routing, proxy_timeout=args.proxy_timeout, ssl_cert=args.ssl_cert,
        ssl_key=args.ssl_key, metrics_ip=host(args.metrics_ip), metrics_port=args.metrics_port,
        access_log=args.access_log, pid_file=args.pid_file, error_target=args.error_target,
        error_path=args.error_path, redirect_port=args.redirect_port, redirect_to=args.redirect_to,
        ssl_ca=args.ssl_ca, ssl_request_cert=args.ssl_request_cert or args.ssl_reject_unauthorized,
        ssl_reject_unauthorized=args.ssl_reject_unauthorized, x_forward=args.x_forward,
        forwarding=Forwarding(args.prepend_path, args.include_prefix, args.insecure),
        custom_headers=tuple(args.custom_header), timeout=args.timeout,
        keep_alive_timeout=75.0 if args.keep_alive_timeout is None else args.keep_alive_timeout,
    ), args


def main(argv: list[str] | None = None, prog: str = "ingressd chp") -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .server import run

    configure_logging("info")
    options, args = parse(argv, prog)
    configure_logging(LOG_LEVELS[args.log_level])
    if not options.token:
        logging.getLogger("ingressd.chp").warning("REST API without a token: set CONFIGPROXY_AUTH_TOKEN")
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(run(options))
    except (OSError, ValueError) as error:
        logging.getLogger("ingressd.chp").error("cannot start: %s", error)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def configurable_http_proxy() -> int:
    """The ``configurable-http-proxy`` console script."""
    return main(prog="configurable-http-proxy")
