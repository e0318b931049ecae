"""The CHP route store and REST API, pure: CHP's trie semantics, status codes and bodies."""

import json
import time
from types import SimpleNamespace

import pickle

from ingressd.chp.api import handle
from ingressd.chp.server import ChpOptions
from ingressd.chp.targets import PathEdit, Target, path_edit, url_join
from ingressd.chp.routes import (Forwarding, ProxyRoutes, clean_path, compile_table, format_time, parse_time,
                                 route_options)

TOKEN = "secret"
AUTH = "token secret"


def call(store, method, url, body=b"", auth=AUTH, token=TOKEN):
    return handle(store, token, method, url, auth, body)


def post(store, path, **data):
    return call(store, "POST", "/api/routes" + path, json.dumps(data).encode())


def test_clean_path_as_chp_trims():
    assert clean_path("") == "/"
    assert clean_path(None) == "/"
    assert clean_path("/") == "/"
    assert clean_path("user/a/") == "/user/a"
    assert clean_path("/user/a") == "/user/a"
    assert clean_path("/user/dd//") == "/user/dd"  # CHP cleans twice


def test_time_format_is_javascript_iso_with_milliseconds():
    assert format_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert parse_time("1970-01-01T00:00:00.500Z") == 0.5
    assert parse_time("1970-01-01T01:00:00+01:00") == 0
    assert parse_time("1970-01-01T00:00:01") == 1  # naive is UTC
    assert parse_time("yesterday") is None
    # what JavaScript's Date.parse also reads (CHP's inactive_since)
    assert parse_time("2100") == parse_time("2100-01") == parse_time("Fri, 01 Jan 2100 00:00:00 GMT") == 4102444800
    assert parse_time("2100-13") is None


def test_trie_longest_segment_prefix():
    store = ProxyRoutes()
    for path in ("/", "/user/alice", "/user/alice/lab", "/hub"):
        post(store, path + "/", target="http://127.0.0.1:9000")
    assert store.lookup("/user/alice/tree/x").path == "/user/alice"
    assert store.lookup("/user/alice/lab").path == "/user/alice/lab"
    assert store.lookup("/user/alicex").path == "/"
    assert store.lookup("/hub/login").path == "/hub"
    store.remove("/")
    assert store.lookup("/nothing") is None


def test_post_get_delete_round_trip_keeps_extra_keys():
    store = ProxyRoutes()
    status, _, body = post(store, "/user/alice/", target="http://127.0.0.1:9000", user="alice", server_name="")
    assert (status, body) == (201, b"")
    status, ctype, body = call(store, "GET", "/api/routes/user/alice")
    assert (status, ctype) == (200, "application/json")
    route = json.loads(body)
    assert route["target"] == "http://127.0.0.1:9000" and route["user"] == "alice" and route["server_name"] == ""
    assert abs(parse_time(route["last_activity"]) - time.time()) < 5
    status, _, body = call(store, "GET", "/api/routes")
    assert list(json.loads(body)) == ["/user/alice"]
    assert call(store, "DELETE", "/api/routes/user/alice/")[:2] == (204, None)
    assert call(store, "DELETE", "/api/routes/user/alice") == (404, None, b"")
    assert call(store, "GET", "/api/routes/user/alice") == (404, None, b"")


def test_errors_as_chp_answers_them():
    store = ProxyRoutes()
    assert call(store, "GET", "/api/routes", auth="") == (403, None, b"")
    assert call(store, "GET", "/api/routes", auth="token wrong") == (403, None, b"")
    assert call(store, "GET", "/api/routes", auth="", token=None)[0] == 200
    assert call(store, "GET", "/api/other") == (404, None, b"Not Found")
    assert call(store, "PUT", "/api/routes/x") == (405, None, b"Method not supported")
    assert call(store, "POST", "/api/routes/x", b"{not json")[0] == 400
    assert call(store, "POST", "/api/routes/x", b"{not json")[2].startswith(b"Body not valid JSON: ")
    assert call(store, "POST", "/api/routes/x", b'{"target": 5}') == (400, None, b"Must specify 'target' as string")
    assert call(store, "POST", "/api/routes/x", b"[]") == (400, None, b"Must specify 'target' as string")
    assert call(store, "GET", "/api/routes?inactive_since=soon") == (
        400, None, b"Invalid datestamp 'soon' must be ISO8601.")
    assert store.routes == {}


def test_inactive_since_filters_by_last_activity():
    store = ProxyRoutes()
    post(store, "/a", target="http://127.0.0.1:1")
    post(store, "/b", target="http://127.0.0.1:2")
    store.routes["/a"].activity.last -= 3600  # an hour idle
    since = format_time(time.time() - 60)
    assert list(json.loads(call(store, "GET", "/api/routes?inactive_since=" + since)[2])) == ["/a"]
    assert list(json.loads(call(store, "GET", "/api/routes?inactiveSince=" + since)[2])) == ["/a"]


def test_activity_from_exchanges_and_tunnels():
    store = ProxyRoutes()
    post(store, "/a", target="http://127.0.0.1:1")
    activity = store.routes["/a"].activity
    before = activity.last
    activity.seen(SimpleNamespace(status=404, conn=None), before + 10)
    assert activity.last == before  # failures are not activity
    class Conn:  # the ClientConnection attributes the sampler reads
        tunnel, tunnel_in, tunnel_out = object(), 0, 0

    conn = Conn()
    activity.seen(SimpleNamespace(status=101, conn=conn), before + 20)
    assert activity.last == before + 20
    activity.sample_tunnels(before + 30)
    assert activity.last == before + 20  # no bytes moved
    conn.tunnel_out = 5
    activity.sample_tunnels(before + 40)
    assert activity.last == before + 40
    conn.tunnel = None
    activity.sample_tunnels(before + 50)
    assert not activity.tunnels


def test_compiled_table_matches_the_trie():
    store = ProxyRoutes()
    for path in ("/", "/user/alice", "/user/alice/lab", "/hub"):
        post(store, path, target="http://127.0.0.1:9000")
    table = compile_table(store, route_options(None))
    for path in ("/user/alice/tree/x", "/user/alice", "/user/alice/lab/", "/user/alicex", "/hub", "/x"):
        assert table.lookup("any.host", path).path == store.lookup(path).path, path
    route = table.lookup("h", "/user/alice/x")
    assert route.backend.endpoints == (("127.0.0.1", 9000),)
    assert route.options.body_size_limit is None
    assert route.activity is store.routes["/user/alice"].activity


def test_host_routing_first_segment_is_the_host():
    store = ProxyRoutes(host_routing=True)
    post(store, "/", target="http://127.0.0.1:1")
    post(store, "/hub.example.org/user/a", target="http://127.0.0.1:2")
    assert store.routes["/hub.example.org/user/a"].data["host"] == "hub.example.org"
    table = compile_table(store, route_options(None))
    assert table.lookup("hub.example.org", "/user/a/x").backend.endpoints == (("127.0.0.1", 2),)
    assert table.lookup("other.org", "/user/a/x").backend.endpoints == (("127.0.0.1", 1),)


def test_unservable_targets_are_refused_clearly():
    store = ProxyRoutes()
    status, _, body = post(store, "/a", target="ftp://x")
    assert status == 400 and b"http://" in body
    assert post(store, "/a", target="http://[::1")[0] == 400
    assert store.routes == {}


def test_url_join_is_http_proxy_3s():
    assert url_join("/prefix", "/user/a") == "/prefix/user/a"
    assert url_join("/prefix/", "/user/a") == "/prefix/user/a"
    assert url_join("/prefix", "user") == "/prefix/user"
    assert url_join("/p?a=1", "/x?b=2") == "/p/x?a=1&b=2"
    assert url_join("", "/x") == "/x"
    assert url_join("/", "//double") == "//double"


def test_targets_with_a_path_and_https():
    assert Target.parse("https://hub.example.org") == Target("hub.example.org", 443, "https")
    assert Target.parse("http://h:81/base/?q=1") == Target("h", 81, "http", "/base/?q=1")
    assert Target.parse("http://h/") == Target("h", 80, "http")
    edit = path_edit(Target.parse("http://h/base"), "/user/a", prepend_path=True, include_prefix=True)
    assert edit.apply(b"/user/a/tree?x=1") == b"/base/user/a/tree?x=1"
    edit = path_edit(Target.parse("http://h/base"), "/user/a", prepend_path=True, include_prefix=False)
    assert edit.apply(b"/user/a/tree") == b"/base/tree"
    assert edit.apply(b"/user/a") == b"/base"
    edit = path_edit(Target.parse("http://h/base"), "/user/a", prepend_path=False, include_prefix=False)
    assert edit.apply(b"/user/a") == b"/"  # nothing left: the root
    assert edit.apply(b"/user/a?x") == b"/?x"
    assert path_edit(Target.parse("http://h/base"), "/u", prepend_path=False, include_prefix=True) is None
    assert path_edit(Target.parse("http://h"), "/", prepend_path=True, include_prefix=False) is None


def test_compiled_routes_carry_their_targets_options():
    store = ProxyRoutes(forwarding=Forwarding(include_prefix=False, insecure=True))
    post(store, "/user/a", target="https://127.0.0.1:9443/base")
    post(store, "/user/b", target="https://127.0.0.1:9444")
    post(store, "/user/c", target="http://127.0.0.1:9000")
    base = route_options(None)
    table = compile_table(store, base)
    a, b, c = (table.lookup("h", f"/user/{n}/x") for n in "abc")
    assert a.options.path_edit == PathEdit("/base", len("/user/a"))
    assert a.options.upstream_tls is b.options.upstream_tls  # one context (and pool key) per host
    assert a.options.upstream_tls.server_name == "127.0.0.1" and a.options.upstream_tls.insecure
    assert c.options.upstream_tls is None and c.options.edits_request
    pickle.loads(pickle.dumps(a.options))  # configurations travel to workers pickled


def test_health_check_on_every_host_and_errors_on_no_route():
    store = ProxyRoutes(host_routing=True)
    post(store, "/hub.example.org/user/a", target="http://127.0.0.1:2")
    table = compile_table(store, route_options(None, error_pages="pages"))
    for host in ("hub.example.org", "other.org"):
        route = table.lookup(host, "/_chp_healthz")
        assert route.options.static == (200, b"application/json", b'{"status": "OK"}')
    missing = table.lookup("other.org", "/user/a")
    assert missing.backend is None and missing.options.error_pages == "pages"


def test_custom_headers_replace_and_last_wins():
    options = ChpOptions(ip=None, port=1, api_ip=None, api_port=2, token=None,
                         custom_headers=(("X-A", "1"), ("x-a", "2"), ("Host", "h")))
    assert options.request_headers() == ((b"x-a", b"x-a: 2\r\n"), (b"host", b"Host: h\r\n"))


def test_a_route_change_recompiles_that_route_only():
    store = ProxyRoutes()
    for i in range(50):
        post(store, f"/user/u{i}", target="http://127.0.0.1:9000")
    options = route_options(None)
    before = compile_table(store, options)
    post(store, "/user/u7", target="http://127.0.0.1:9001")
    after = compile_table(store, options)
    assert after.lookup("h", "/user/u3") is before.lookup("h", "/user/u3")  # reused, not rebuilt
    assert after.lookup("h", "/user/u7").backend.endpoints == (("127.0.0.1", 9001),)
    assert compile_table(store, route_options(None)).lookup("h", "/user/u3") is not before.lookup("h", "/user/u3")
