"""The Hub's routes overlaid on a translated configuration (ingressd serve --proxy-api), pure."""

import pickle

from ingressd.chp import routes as chp_routes
from ingressd.chp.hub import handing_ingresses, overlay
from ingressd.chp.routes import ProxyRoutes
from ingressd.config import Config, Snapshot
from ingressd.hosts import HostMap
from ingressd.objects import Ingress, Meta
from ingressd.routing import Backend, HostRoutes, Route, RouteTable


def ingress_route(host, path, ingress, service):
    return Route(host, path, "Prefix", namespace="default", ingress=ingress, https_redirect=True,
                 backend=Backend("default", service, "80", (("10.0.0.1", 80),)))


def table():
    hosts = HostMap()
    hosts["hub.example.org"] = HostRoutes(prefix={"": ingress_route("hub.example.org", "/", "hub", "site"),
                                                  "/services/grafana": ingress_route("hub.example.org",
                                                                                     "/services/grafana", "hub",
                                                                                     "grafana")})
    hosts["other.org"] = HostRoutes(prefix={"": ingress_route("other.org", "/", "other", "site")})
    return Config(RouteTable(hosts=hosts))


def hub_store():
    store = ProxyRoutes()
    store.add("/", {"target": "http://10.1.0.1:8081"})
    store.add("/user/alice", {"target": "http://10.1.0.2:8888"})
    return store


def snapshot(*annotated):
    objs = tuple(Ingress(Meta("Ingress", "default", name, annotations={"ingressd.io/proxy-api": "true"}
                              if name in annotated else {}), "ingressd", None, (), ()) for name in ("hub", "other"))
    return Snapshot(objects=objs)


def test_only_annotated_ingresses_hand_hosts():
    assert handing_ingresses(snapshot("hub")) == {("default", "hub")}
    assert handing_ingresses(snapshot()) == frozenset()


def test_hub_routes_win_ties_longer_ingress_paths_stay():
    config = table()
    served = overlay(config, frozenset({("default", "hub")}), hub_store())
    lookup = served.table.lookup
    assert lookup("hub.example.org", "/user/alice/lab").backend.endpoints == (("10.1.0.2", 8888),)
    assert lookup("hub.example.org", "/hub/login").backend.endpoints == (("10.1.0.1", 8081),)  # Hub's / wins
    assert lookup("hub.example.org", "/services/grafana/x").service == "grafana"
    assert lookup("other.org", "/user/alice").service == "site"  # not handed
    route = lookup("hub.example.org", "/user/alice")
    assert route.https_redirect and route.ingress == "hub" and route.activity is not None
    assert config.table.lookup("hub.example.org", "/user/alice").service == "site"  # the input is unchanged


def test_nothing_handed_returns_the_same_configuration():
    config = table()
    assert overlay(config, frozenset(), hub_store()) is config
    assert overlay(config, frozenset({("default", "nobody")}), hub_store()) is config


def test_activity_is_one_object_per_route_in_each_process():
    store = hub_store()
    activity = store.routes["/user/alice"].activity
    first, second = pickle.loads(pickle.dumps(activity)), pickle.loads(pickle.dumps(activity))
    assert first is second and first.key == "/user/alice"  # one object across configurations
    first.last += 5
    assert chp_routes.activity_stamps()["/user/alice"] == first.last
    store.observe({"/user/alice": first.last, "/gone": 1.0})
    assert activity.last == first.last


def test_host_routing_routes_go_to_their_host_when_handed():
    hosts = HostMap()
    hosts["*.hub.example.org"] = HostRoutes(prefix={"": ingress_route("*.hub.example.org", "/", "hub", "site")})
    hosts["other.org"] = HostRoutes(prefix={"": ingress_route("other.org", "/", "other", "site")})
    config = Config(RouteTable(hosts=hosts))
    store = ProxyRoutes(host_routing=True)
    store.add("/", {"target": "http://10.1.0.1:8081"})
    store.add("/alice.hub.example.org/user/alice", {"target": "http://10.1.0.2:8888"})
    store.add("/other.org/user/bob", {"target": "http://10.1.0.3:8888"})
    lookup = overlay(config, frozenset({("default", "hub")}), store).table.lookup
    assert lookup("alice.hub.example.org", "/user/alice/x").backend.endpoints == (("10.1.0.2", 8888),)
    assert lookup("alice.hub.example.org", "/").backend.endpoints == (("10.1.0.1", 8081),)  # shared: the Hub's /
    assert lookup("bob.hub.example.org", "/user/alice").backend.endpoints == (("10.1.0.1", 8081),)
    assert lookup("other.org", "/user/bob").service == "site"  # not handed: the Hub cannot take it
