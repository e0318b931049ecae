"""What ingressd answers itself, decided from the request's facts and its route: a pure function.

ingress-nginx's order, for one request (after a route's fixed answer, ``options.static``):

1. a declared body larger than the route's ``proxy-body-size``: 413, and the connection closes
   (the body is never read);
2. an HTTP-01 challenge token ingressd is publishing: its key authorization (before routing and
   before the HTTPS redirect, so a CA can always validate over plain HTTP);
3. plain HTTP to a host with TLS (``ssl-redirect``) or ``force-ssl-redirect``: 308 to HTTPS;
4. ``permanent-redirect`` / ``temporal-redirect``: the rendered target;
5. ``app-root``: ``/`` answers 302 to it;
6. ``enable-cors``: a preflight (OPTIONS) from an allowed origin answers 204 (nginx's rewrite
   phase, before its access phase, as all of the above);
7. ``limit-rps`` / ``limit-rpm``: 503 (``limit-req-status-code``) past the rate and burst (nginx's
   preaccess phase; the one rule with state: the limiter's buckets, per configuration);
   (``limit-connections`` is counted by the connection, ``http.ClientConnection.hold``, once no
   rule here answers: it has state that lives as long as the request);
8. ``whitelist-source-range`` / ``denylist-source-range`` / ``block-cidrs``: 403;
   authentication ingressd cannot do (digest, client certificates): 503;
   ``auth-type: basic``: 401 without valid credentials (``DEFER`` when a password must be hashed);
   ``auth-url`` (or the ConfigMap's ``global-auth-url``): ``DEFER``, the connection asks the auth
   server (asynchronously, ``options.extauth``), then calls ``backend_answer``;
9. no backend (the built-in default backend): 404 (``ingressd chp``: its error pages);
10. a backend with no usable endpoint: 503 naming why.

Anything else is proxied. Nothing here does IO or keeps state.
"""

from __future__ import annotations

from typing import NamedTuple

from ..routing import ACME_CHALLENGE_PREFIX, Route
from . import grpcstatus, responses


class Answer(NamedTuple):
    status: int
    body: bytes = b""
    location: str | None = None  # a redirect target
    close: bool = False  # close the connection after answering
    hsts: bool = True  # Strict-Transport-Security may be added (not on challenge answers)
    headers: bytes = b""  # extra CRLF-terminated field lines
    content_type: bytes | None = None  # of the body, when not plain text


def answer_for(route: Route, host: str, path: str, url: bytes, *, tls: bool, scheme: str, body_length: int,
               challenges: dict[str, bytes], https_port: int, method: bytes = b"GET", client_ip: str = "",
               origin: bytes | None = None, now: float = 0.0, authorization: bytes | None = None) -> Answer | None:
    """The local answer to a request, or None when it goes to the route's backend.

    ``path`` is the normalized path (routing's view), ``url`` the request target as received
    (origin form), ``body_length`` the declared Content-Length or -1, ``origin`` the Origin
    header (looked up only for CORS routes).
    """
    options = route.options
    if options.static is not None:
        status, content_type, body = options.static
        return Answer(status, body, content_type=content_type)
    limit = options.body_size_limit
    if limit is not None and body_length > limit:
        return Answer(413, responses.error_body(
            413, f"the body of {body_length} bytes exceeds the limit of {limit} bytes"), close=True)
    if path.startswith(ACME_CHALLENGE_PREFIX):
        token = challenges.get(path[len(ACME_CHALLENGE_PREFIX):])
        if token is not None:
            return Answer(200, token, hsts=False)
    elif route.https_redirect and not tls:
        target = "https://" + host + ("" if https_port == 443 else f":{https_port}") + url.decode("latin-1")
        return Answer(options.https_redirect_code, location=target)
    if options.redirect is not None:
        return Answer(options.redirect.code, location=options.redirect.render(scheme, host, url.decode("latin-1")))
    if options.app_root is not None and path == "/":
        return Answer(302, location=options.app_root)  # relative: right whatever port the client used
    if options.cors is not None and method == b"OPTIONS":
        headers = options.cors.preflight_headers(origin)
        if headers is not None:
            return Answer(204, headers=headers + b"Content-Type: text/plain; charset=utf-8\r\n")
    if options.rate_limits:
        for limit in options.rate_limits:
            if not limit.admits(client_ip, now):
                return Answer(limit.status, responses.error_body(limit.status, "too many requests from your address"))
    if options.ranges is not None and not options.ranges.permits(client_ip):
        return Answer(403, responses.error_body(403, "your address may not use this route"))
    if options.refused is not None:
        return Answer(503, responses.error_body(503, options.refused))
    if options.basic_auth is not None:
        verdict = options.basic_auth.verdict(authorization)
        if verdict is False:
            return Answer(401, responses.error_body(401), headers=options.basic_auth.challenge)
        if verdict is None:  # a password to hash: off the event loop (options.basicauth.verify)
            return DEFER
    if options.ext_auth is not None:
        return DEFER
    return backend_answer(route)


DEFER = Answer(0)  # the request waits for an asynchronous check (auth-url) before ``backend_answer``


def backend_answer(route: Route) -> Answer | None:
    """Steps 9 and 10: a route without a (usable) backend."""
    options = route.options
    backend = route.backend
    if backend is None:
        if options.error_pages is not None:  # ingressd chp: answered as a failure (Exchange.fail)
            return None
        return Answer(404, responses.DEFAULT_BACKEND_BODY)
    if backend.error is not None:
        if options.grpc:  # backend-protocol GRPC(S): UNAVAILABLE in a trailers-only answer
            return Answer(200, headers=grpcstatus.trailers_only(503, backend.error), content_type=b"")
        return Answer(503, responses.error_body(503, backend.error))
    return None

