"""Upstream selection (ingressd.options.balance, UpstreamPool.choose): ewma, upstream-hash-by,
affinity: cookie, canary. Pure functions first, then the data plane in process (dataplanekit)."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from dataplanekit import Rig
from ingressd.annotations import parse_route_options
from ingressd.config import ClientTrust
from ingressd.controller_config import parse_controller_configmap
from ingressd.options import balance as lb
from unitkit import NGINX, compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FOUR = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


def web(annotations=None, addresses=FOUR, extra=()):
    return compile_config(ingress("web", rule("a.com", path("/", "web")), annotations=annotations),
                          *svc_with_endpoints("web", addresses), *extra)


def get(rig, target="/", headers=b"", host="a.com", scheme="http"):
    client = rig.client(scheme)
    client.send(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + headers + b"\r\n")
    return client


def served(rig, client, answer=OK):
    """The endpoint the request went to (a new or a pooled connection), after answering it."""
    upstream = next(u for u in rig.upstreams if u.conn.exchange is not None)
    upstream.send(answer)
    return upstream.conn.endpoint, client.response()


# --- ewma ---------------------------------------------------------------------------------------

def test_ewma_decays_towards_new_observations():
    scores = lb.EwmaScores()
    scores.observe("a", 1.0, now=100.0)
    assert scores.score("a", 100.0) == 1.0
    assert scores.score("a", 110.0) == pytest.approx(1.0 / 2.718281828, rel=1e-6)  # e^-(10/10)
    scores.observe("a", 0.0, now=110.0)  # a fast answer 10 s later: the average falls by 1 - e^-1
    assert scores.score("a", 110.0) == pytest.approx(0.3679, rel=1e-3)
    assert scores.score("unknown", 0.0) == 0.0


def test_ewma_picks_the_lower_of_two_and_skips_endpoints_tried():
    scores = lb.EwmaScores()
    scores.observe("slow", 2.0, 0.0)
    scores.observe("fast", 0.01, 0.0)
    rand = random.Random(1)
    assert {lb.pick_ewma(["slow", "fast"], set(), scores, 0.0, rand) for _ in range(20)} == {"fast"}
    assert lb.pick_ewma(["slow", "fast"], {"fast"}, scores, 0.0, rand) == "slow"  # the retry goes elsewhere
    assert lb.pick_ewma(["slow", "fast"], {"fast", "slow"}, scores, 0.0, rand) == "fast"  # all tried: all again


def test_ewma_slow_start_gives_new_endpoints_the_average():
    scores = lb.EwmaScores()
    scores.observe("a", 1.0, 0.0)
    scores.observe("b", 3.0, 0.0)
    scores.slow_start(["a", "b", "c"], 0.0)
    assert scores.score("c", 0.0) == 2.0


def test_load_balance_annotation_over_configmap():
    controller, warnings = parse_controller_configmap({"load-balance": "ewma"}, ClientTrust())
    assert not warnings and controller.defaults.options.balance.method == "ewma"
    inherited, _ = parse_route_options({}, controller.defaults)
    assert inherited.balance.method == "ewma"
    own, warnings = parse_route_options({NGINX + "load-balance": "round_robin"}, controller.defaults)
    assert own.balance is None and not warnings  # the annotation wins: plain round robin
    bad, warnings = parse_route_options({NGINX + "load-balance": "fastest"})
    assert bad.balance is None and "load-balance: 'fastest' is invalid" in warnings[0]


def test_ewma_route_sends_to_the_endpoint_with_the_better_score():
    rig = Rig(web({NGINX + "load-balance": "ewma"}, addresses=("10.0.0.1", "10.0.0.2")))
    rig.pool.ewma.observe(("10.0.0.1", 8080), 5.0, time.monotonic())
    rig.pool.ewma.observe(("10.0.0.2", 8080), 0.001, time.monotonic())
    for _ in range(10):
        assert served(rig, get(rig))[0] == ("10.0.0.2", 8080)
    # Each finished exchange fed its latency back into the endpoint's score.
    assert rig.pool.ewma.table[("10.0.0.2", 8080)][0] != 0.001


def test_ewma_feedback_comes_from_finished_exchanges():
    config = web({NGINX + "load-balance": "ewma"}, addresses=("10.0.0.1",))
    route = config.table.lookup("a.com", "/")
    assert route.activity is lb.EWMA_FEEDBACK
    rig = Rig(config)
    served(rig, get(rig))
    assert ("10.0.0.1", 8080) in rig.pool.ewma.table
    plain = web().table.lookup("a.com", "/")
    assert plain.options.balance is None and plain.activity is None  # round robin: the one-check path


# --- upstream-hash-by -------------------------------------------------------------------------------

def test_hash_ring_is_resty_chash():
    """lua-resty-balancer's own test vector (t/chash.t): weights 10, 2, 1, keys 1..100000."""
    ring = lb.HashRing(["server1", "server2", "server3"], weights={"server1": 10, "server2": 2, "server3": 1})
    assert len(ring.hashes) == 2080
    assert Counter(ring.find(str(i).encode()) for i in range(1, 100001)) == {
        "server1": 75588, "server2": 16114, "server3": 8298}


def test_adding_an_endpoint_moves_few_keys():
    endpoints = [(f"10.0.0.{i}", 8080) for i in range(1, 11)]
    before = lb.HashRing(endpoints)
    after = lb.HashRing(endpoints + [("10.0.0.11", 8080)])
    keys = [f"/user/{i}".encode() for i in range(5000)]
    moved = [k for k in keys if before.find(k) != after.find(k)]
    assert len(moved) < 0.15 * len(keys)  # about 1/11 (a modulo hash would move ~10/11)
    assert all(after.find(k) == ("10.0.0.11", 8080) for k in moved)  # only to the new endpoint
    assert len({before.find(k) for k in keys}) == 10


def test_hash_subsets_fill_the_last_group_from_the_start():
    assert lb.hash_subsets("abcde", 3) == {"set1": ("a", "b", "c"), "set2": ("d", "e", "a")}


@pytest.mark.parametrize("value, template", [
    ("$request_uri", "${request_uri}"),
    ("$remote_addr$http_x_user", "${remote_addr}${http_x_user}"),
    ("${cookie_session}-text", "${cookie_session}-text"),
])
def test_hash_by_templates(value, template):
    assert lb.parse_hash_by(value).template == template


@pytest.mark.parametrize("value", ["$request_uri; drop", "$nginx_version", "", "$http_"])
def test_hash_by_refuses_unknown_variables_and_other_characters(value):
    with pytest.raises(ValueError):
        lb.parse_hash_by(value)


def test_hash_by_annotation_reaches_the_same_endpoint_for_the_same_key():
    rig = Rig(web({NGINX + "upstream-hash-by": "$http_x_user"}))
    first = {user: served(rig, get(rig, headers=b"X-User: %s\r\n" % user))[0] for user in (b"ann", b"bob", b"cy")}
    for user, endpoint in first.items():
        for target in ("/", "/other?x=1"):
            assert served(rig, get(rig, target, headers=b"X-User: %s\r\n" % user))[0] == endpoint
    ring = lb.HashRing([(address, 8080) for address in FOUR])
    assert first == {user: ring.find(user) for user in first}
    spread = {served(rig, get(rig, headers=b"X-User: u%d\r\n" % i))[0] for i in range(40)}
    assert len(spread) == 4


def test_hash_by_request_uri_and_subsets():
    rig = Rig(web({NGINX + "upstream-hash-by": "$request_uri", NGINX + "upstream-hash-by-subset": "true",
                   NGINX + "upstream-hash-by-subset-size": "2"}))
    groups = lb.hash_subsets([(a, 8080) for a in FOUR], 2)
    ring = lb.HashRing(groups)
    for target in ("/a", "/b?x", "/c/d"):
        seen = {served(rig, get(rig, target))[0] for _ in range(12)}
        assert seen <= set(groups[ring.find(target.encode())])
    options, warnings = parse_route_options({NGINX + "upstream-hash-by": "$request_uri", NGINX + "load-balance": "ewma"})
    assert not warnings and options.balance.hash_by is not None  # hash-by wins over load-balance


# --- affinity: cookie ------------------------------------------------------------------------------

def sticky_cookie(response) -> str:
    line = response.header("set-cookie")
    assert line is not None, response
    return line.split(";", 1)[0]


def test_set_cookie_line_in_lua_resty_cookies_order():
    affinity = lb.CookieAffinity(name="route", expires=172800, max_age=259200, domain="foo.bar", samesite="None",
                                 conditional_samesite_none=True)
    line = affinity.set_cookie("k|b", "/app", True, b"Mozilla/5.0 Firefox/120.0", 1_800_000_000).decode()
    assert line == ("Set-Cookie: route=k|b; Expires=Sun, 17-Jan-27 08:00:00 GMT; Max-Age=259200; Domain=foo.bar; "
                    "Path=/app; Secure; HttpOnly; SameSite=None\r\n")
    old_safari = b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605 Version/12.1 Safari/605"
    assert "SameSite" not in affinity.set_cookie("k|b", "/", False, old_safari, 0).decode()
    plain = lb.CookieAffinity().set_cookie("k|b", "/", False, None, 0).decode()
    assert plain == "Set-Cookie: INGRESSCOOKIE=k|b; Path=/; HttpOnly\r\n"
    assert lb.cookie_time(2_200_000_000) == "Sun, 18-Sep-2039 23:06:40 GMT"  # 4-digit years past 2037, as nginx


def test_backend_key_and_persistent_keys_are_ingress_nginxs():
    import hashlib
    name = "default-web-80"
    assert lb.backend_key(name) == hashlib.md5((hashlib.md5(name.encode()).hexdigest() + name).encode()).hexdigest()
    state = lb.StickyBackend(name, [("10.0.0.1", 8080)], "persistent")
    key = hashlib.md5(b"default-web-8010.0.0.1:8080").hexdigest()
    assert state.find(key) == ("10.0.0.1", 8080) and state.find("other") is None
    assert lb.split_sticky(b"abc|def") == ("abc", "def") and lb.split_sticky(None) == (None, None)


@pytest.mark.parametrize("mode", ["balanced", "persistent"])
def test_affinity_cookie_is_set_once_and_keeps_the_endpoint(mode):
    rig = Rig(web({NGINX + "affinity": "cookie", NGINX + "affinity-mode": mode,
                   NGINX + "session-cookie-max-age": "3600"}))
    endpoint, response = served(rig, get(rig))
    cookie = sticky_cookie(response)
    assert cookie.startswith("INGRESSCOOKIE=") and cookie.endswith("|" + lb.backend_key("default-web-80"))
    assert "Max-Age=3600; Path=/; HttpOnly" in response.header("set-cookie")
    for _ in range(8):
        again, response = served(rig, get(rig, headers=b"Cookie: a=b; " + cookie.encode() + b"\r\n"))
        assert again == endpoint and response.header("set-cookie") is None
    others = {served(rig, get(rig))[0] for _ in range(30)}  # without the cookie: spread, a new cookie each
    assert len(others) > 1


def test_affinity_cookie_path_is_the_ingress_path_and_https_makes_it_secure():
    config = compile_config(ingress("web", rule("a.com", path("/app", "web")), annotations={
        NGINX + "affinity": "cookie", NGINX + "session-cookie-name": "SERVERID"}), *svc_with_endpoints("web", FOUR))
    rig = Rig(config)
    _, response = served(rig, get(rig, "/app/x", scheme="https"))
    assert response.header("set-cookie").endswith("; Path=/app; Secure; HttpOnly")
    options, warnings = parse_route_options({NGINX + "affinity": "cookie", NGINX + "use-regex": "true"})
    assert any("session-cookie-path should be set" in w for w in warnings)


def test_a_failed_attempt_stays_on_the_cookies_endpoint_unless_change_on_failure():
    for change, expected in (("false", 1), ("true", 3)):  # true: each retry a new endpoint
        rig = Rig(web({NGINX + "affinity": "cookie", NGINX + "affinity-mode": "persistent",
                       NGINX + "session-cookie-change-on-failure": change}))
        endpoint, response = served(rig, get(rig))
        cookie = sticky_cookie(response).encode()
        rig.pool.close_idle()
        rig.settle()
        rig.dial = "refuse"
        dialed = len(rig.dialed)
        get(rig, headers=b"Cookie: " + cookie + b"\r\n")
        tried = rig.dialed[dialed:]
        assert tried[0] == endpoint and len(set(tried)) == expected and len(tried) == 3, tried


# --- canary -------------------------------------------------------------------------------------

def split(main_annotations=None, canary_annotations=None, canary_path=None, extra=()):
    canary = {NGINX + "canary": "true", **(canary_annotations or {})}
    return compile_config(
        ingress("main", rule("a.com", path("/", "web")), annotations=main_annotations,
                created="2020-01-01T00:00:00Z"),
        ingress("main-canary", rule("a.com", canary_path or path("/", "web-canary")), annotations=canary,
                created="2021-01-01T00:00:00Z"),
        *svc_with_endpoints("web", ("10.0.0.1", "10.0.0.2")), *svc_with_endpoints("web-canary", ("10.9.0.1",)),
        *extra)


def side(rig, client) -> str:
    return "canary" if served(rig, client)[0][0].startswith("10.9.") else "main"


def test_canary_policy_precedence_header_cookie_weight():
    rand = random.Random(3)
    policy = lb.CanaryPolicy(weight=0, header=b"x_canary", cookie=b"canary")
    assert policy.decide([(b"X-Canary", b"always")], rand)
    assert not policy.decide([(b"X-Canary", b"never"), (b"Cookie", b"canary=always")], rand)
    assert policy.decide([(b"X-Canary", b"other"), (b"Cookie", b"canary=always")], rand)
    assert not policy.decide([(b"Cookie", b"canary=never")], rand)
    valued = lb.CanaryPolicy(header=b"x_region", header_value=b"eu")
    assert valued.decide([(b"X-Region", b"eu")], rand) and not valued.decide([(b"X-Region", b"always")], rand)
    pattern = lb.CanaryPolicy(header=b"user_agent", header_pattern=lb.parse_pattern("Chrome/1[0-9]{2}"))
    assert pattern.decide([(b"User-Agent", b"Mozilla Chrome/120.0")], rand)
    assert not pattern.decide([(b"User-Agent", b"Chrome/99")], rand)
    weighted = lb.CanaryPolicy(weight=300, weight_total=1000)
    share = sum(weighted.decide([], rand) for _ in range(4000)) / 4000
    assert 0.25 < share < 0.35
    assert all(lb.CanaryPolicy(weight=100, weight_total=50).decide([], rand) for _ in range(50))  # total >= 100
    with pytest.raises(ValueError):
        lb.parse_pattern("(a)\\1")  # a backreference: not RE2


def test_canary_ingress_splits_the_main_route_instead_of_conflicting():
    config = split(canary_annotations={NGINX + "canary-by-header": "X-Canary"})
    assert not any("already defined" in d.message for d in config.diagnostics)
    route = config.table.lookup("a.com", "/x")
    assert route.ingress == "main" and route.options.balance.canary.backend.service == "web-canary"
    rig = Rig(config)
    assert {side(rig, get(rig)) for _ in range(10)} == {"main"}
    assert side(rig, get(rig, headers=b"X-Canary: always\r\n")) == "canary"
    assert side(rig, get(rig, headers=b"X-Canary: never\r\n")) == "main"


def test_canary_weight_splits_traffic():
    rig = Rig(split(canary_annotations={NGINX + "canary-weight": "50"}))
    sides = Counter(side(rig, get(rig)) for _ in range(200))
    assert 60 < sides["canary"] < 140, sides
    full = Rig(split(canary_annotations={NGINX + "canary-weight": "100"}))
    assert {side(full, get(full)) for _ in range(10)} == {"canary"}


def test_canary_without_a_main_path_is_reported_and_not_served():
    config = split(canary_path=path("/beta", "web-canary"))
    assert any("canary: no main Ingress defines host a.com path /beta (Prefix)" in d.message
               for d in config.diagnostics)
    assert config.table.lookup("a.com", "/beta").options.balance is None


def test_canary_with_affinity_keeps_each_session_on_its_side():
    rig = Rig(split(main_annotations={NGINX + "affinity": "cookie"},
                    canary_annotations={NGINX + "canary-weight": "50"}))
    cookies = {}
    for _ in range(40):
        client = get(rig)
        which = "canary" if rig.upstreams and next(
            u for u in rig.upstreams if u.conn.exchange is not None).conn.endpoint[0].startswith("10.9.") else "main"
        _, response = served(rig, client)
        cookies.setdefault(which, sticky_cookie(response))
    assert set(cookies) == {"main", "canary"}
    assert cookies["canary"].endswith("|" + lb.backend_key("default-web-canary-80"))
    for which, cookie in cookies.items():
        sides = {side(rig, get(rig, headers=b"Cookie: " + cookie.encode() + b"\r\n")) for _ in range(15)}
        assert sides == {which}, (which, sides)


def test_canary_legacy_behavior_ignores_affinity_on_the_canary():
    rig = Rig(split(main_annotations={NGINX + "affinity": "cookie"},
                    canary_annotations={NGINX + "canary-weight": "100",
                                        NGINX + "affinity-canary-behavior": "legacy"}))
    endpoint, response = served(rig, get(rig))
    assert endpoint[0].startswith("10.9.") and response.header("set-cookie") is None


def test_hash_rings_outlive_a_configuration_change():
    rig = Rig(web({NGINX + "upstream-hash-by": "$request_uri", NGINX + "affinity": "cookie"}))
    served(rig, get(rig))
    built = dict(rig.pool.rings)
    rig.pool.reset_balancing()  # a new configuration, the same endpoints: nothing to rebuild
    served(rig, get(rig))
    assert rig.pool.rings == built and all(rig.pool.rings[k] is v for k, v in built.items())


def test_affinity_cookie_is_set_on_a_websocket_upgrade_too():
    rig = Rig(web({NGINX + "affinity": "cookie"}))
    client = rig.client()
    client.send(b"GET /ws HTTP/1.1\r\nHost: a.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    rig.upstream().send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = client.received().split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 101") and b"\r\nSet-Cookie: INGRESSCOOKIE=" in head
