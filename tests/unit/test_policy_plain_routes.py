"""``Route.plain``: the request path skips ``policy.answer_for`` for routes where it could only
answer an ACME challenge or a too-large body. These tests keep that shortcut equal to the call."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace

import pytest

from ingressd.annotations import ANSWERING_OPTIONS, DEFAULT_OPTIONS, Redirect
from ingressd.dataplane import policy
from ingressd.routing import Backend, Route

BACKEND = Backend("ns", "web", "80", (("10.0.0.1", 80),))
# Options answer_for reads that do not answer by themselves: they shape an answer that one of
# ANSWERING_OPTIONS (or the route's https_redirect, a challenge, the body limit) decided on.
SHAPING = {"body_size_limit", "https_redirect_code", "error_pages", "grpc"}


def test_every_option_answer_for_reads_is_accounted_for():
    source = inspect.getsource(policy.answer_for) + inspect.getsource(policy.backend_answer)
    source = "\n".join(line.partition("#")[0] for line in source.splitlines())  # code, not comments
    read = set(re.findall(r"options\.([a-z_]+)", source))
    assert read - set(ANSWERING_OPTIONS) - SHAPING == set(), "a new answering option must join ANSWERING_OPTIONS"


def ask(route: Route, path: str = "/x", tls: bool = False, body_length: int = 0):
    return policy.answer_for(route, "h", path, path.encode(), tls=tls, scheme="https" if tls else "http",
                             body_length=body_length, challenges={"tok": b"key"}, https_port=443)


def test_a_default_proxied_route_is_plain_and_answer_for_agrees():
    route = Route("h", "/", "Prefix", backend=BACKEND)
    assert route.plain
    assert ask(route) is None and ask(route, tls=True) is None and ask(route, body_length=-1) is None


@pytest.mark.parametrize("route", [
    Route("h", "/", "Prefix", backend=None),  # the default backend: 404
    Route("h", "/", "Prefix", backend=replace(BACKEND, endpoints=(), error="no endpoints")),
    Route("h", "/", "Prefix", backend=BACKEND, https_redirect=True),
    Route("h", "/", "Prefix", backend=BACKEND, options=replace(DEFAULT_OPTIONS, app_root="/app")),
    Route("h", "/", "Prefix", backend=BACKEND, options=replace(DEFAULT_OPTIONS, static=(200, b"text/plain", b"x"))),
    Route("h", "/", "Prefix", backend=BACKEND, options=replace(DEFAULT_OPTIONS, refused="digest")),
    Route("h", "/", "Prefix", backend=BACKEND,
          options=replace(DEFAULT_OPTIONS, redirect=Redirect(301, ("https://example.org",)))),
], ids=["default-backend", "no-endpoints", "https-redirect", "app-root", "static", "refused", "redirect"])
def test_routes_that_answer_are_not_plain(route):
    assert not route.plain
    path = "/" if route.options.app_root else "/x"
    assert ask(route, path) is not None  # answer_for does answer: the shortcut would have been wrong


def test_the_shortcut_still_leaves_challenges_and_large_bodies_to_answer_for():
    route = Route("h", "/", "Prefix", backend=BACKEND)
    assert ask(route, "/.well-known/acme-challenge/tok").status == 200
    assert ask(route, body_length=DEFAULT_OPTIONS.body_size_limit + 1).status == 413
