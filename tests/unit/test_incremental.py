"""The incremental translator gives exactly what a full translation gives, reusing what did not change."""

from __future__ import annotations

import random

import pytest

from ingressd.config import Settings, Snapshot
from ingressd.incremental import Translator
from ingressd.objects import parse_object
from ingressd.translate import translate

from unitkit import NGINX, cert_for, endpoint_slice, ingress, path, rule, service, tls_secret

HOSTS = ["a.test", "b.test", "c.test", "d.test", "e.test", ""]
SERVICES = ["s1", "s2", "s3", "s4"]


def canonical(config):
    """Everything a configuration decides, in comparable form."""
    def host_routes(routes):
        if routes is None:
            return None
        return (sorted(map(repr, routes.exact.items())), sorted(map(repr, routes.prefix.items())),
                [repr(r) for r in routes.regex], repr(routes.fallback), routes.tls)

    table = config.table
    return {
        "hosts": [(pattern, host_routes(routes)) for pattern, routes in table.hosts.items()],
        "any_host": host_routes(table.any_host),
        "default": repr(table.default),
        "certificates": [(pattern, cert.source) for pattern, cert in config.certificates.items()],
        "diagnostics": sorted(map(str, config.diagnostics)),
        "ingress_count": config.ingress_count,
        "orphans": sorted(config.orphans),
        "required": sorted(config.required),
    }


class World:
    """Manifest documents by key, parsed once each, so unchanged objects keep their identity."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.docs: dict[tuple, object] = {}
        self.serial = 0

    def put(self, doc: dict) -> None:
        for obj in parse_object(doc, "world.yaml"):
            self.docs[obj.meta.key] = obj

    def drop(self, key) -> None:
        self.docs.pop(key, None)

    def snapshot(self) -> Snapshot:
        return Snapshot(objects=tuple(self.docs.values()))

    def random_ingress(self, name: str) -> dict:
        rng = self.rng
        rules = []
        for _ in range(rng.randint(1, 2)):
            host = rng.choice(HOSTS)
            paths = [path(rng.choice(["/", "/api", "/api/v1", "/x"]), rng.choice(SERVICES),
                          path_type=rng.choice(["Prefix", "Exact"])) for _ in range(rng.randint(1, 2))]
            rules.append(rule(host or None, *paths))
        annotations = {}
        if rng.random() < 0.15:
            annotations[NGINX + "use-regex"] = "true"
        if rng.random() < 0.2:
            annotations[NGINX + "ssl-redirect"] = "false"
        if rng.random() < 0.1:
            annotations[NGINX + "proxy-body-size"] = rng.choice(["8m", "bogus"])
        balancing = random.Random(f"{name}-{self.serial}")  # its own draws: the main sequence stays as it was
        if balancing.random() < 0.15:  # canaries split the main routes of other Ingresses of their hosts
            annotations[NGINX + "canary"] = "true"
            annotations[NGINX + "canary-weight"] = "30"
        if balancing.random() < 0.1:
            annotations[NGINX + "affinity"] = "cookie"
        if balancing.random() < 0.1:
            annotations[NGINX + "load-balance"] = "ewma"
        tls = None
        if rng.random() < 0.4:
            hosts = sorted({rng.choice(HOSTS[:-1]) for _ in range(2)})
            tls = [{"hosts": hosts, "secretName": rng.choice(["tls-ab", "tls-missing", "tls-cd"])}]
        self.serial += 1
        namespace = "team" if name.endswith(("1", "5")) else None  # backends are namespaced
        return ingress(name, *rules, annotations=annotations, tls=tls, namespace=namespace,
                       created=f"2026-01-01T00:00:{self.serial % 60:02d}Z")

    def random_slice(self, name: str, namespace: str | None = None) -> dict:
        addresses = [f"10.0.0.{self.rng.randint(1, 9)}" for _ in range(self.rng.randint(0, 2))]
        return endpoint_slice(name + "-x", name, addresses, namespace=namespace)


def build_world(seed: int) -> World:
    world = World(random.Random(seed))
    for name in SERVICES[:3]:
        world.put(service(name))
        world.put(world.random_slice(name))
    world.put(service("s1", namespace="team"))
    world.put(world.random_slice("s1", "team"))
    world.put(tls_secret("tls-ab", *cert_for("a.test", "b.test")))
    world.put(tls_secret("tls-cd", *cert_for("c.test", "d.test")))
    for i in range(8):
        world.put(world.random_ingress(f"ing-{i}"))
    return world


def edit(world: World) -> str:
    rng = world.rng
    choice = rng.randrange(7)
    name = f"ing-{rng.randrange(10)}"
    if choice == 6 and rng.random() < 0.3:
        world.put(world.random_slice("s1", "team"))
        return "slice team/s1"
    if choice <= 2:
        world.put(world.random_ingress(name))
        return f"put {name}"
    if choice == 3:
        world.drop(("Ingress", "team" if name.endswith(("1", "5")) else "default", name))
        return f"drop {name}"
    svc = rng.choice(SERVICES)
    if choice == 4:
        world.put(world.random_slice(svc))
        return f"slice {svc}"
    if choice == 5:
        if ("Service", "default", svc) in world.docs:
            world.drop(("Service", "default", svc))
            return f"drop service {svc}"
        world.put(service(svc))
        return f"add service {svc}"
    secret = rng.choice(["tls-ab", "tls-cd"])
    if ("Secret", "default", secret) in world.docs and rng.random() < 0.5:
        world.drop(("Secret", "default", secret))
        return f"drop secret {secret}"
    names = ("a.test", "b.test") if secret == "tls-ab" else rng.choice([("c.test", "d.test"), ("c.test",)])
    world.put(tls_secret(secret, *cert_for(*names)))
    return f"put secret {secret} {names}"


@pytest.mark.parametrize("seed", range(12))
def test_random_edits_translate_as_a_full_translation(seed):
    world = build_world(seed)
    translator = Translator(Settings())
    translator.translate(world.snapshot())
    modes = set()
    history = []
    for _ in range(25):
        history.append(edit(world))
        snapshot = world.snapshot()
        got = translator.translate(snapshot)
        modes.add(translator.last_mode.split(":")[0])
        assert canonical(got) == canonical(translate(snapshot, Settings())), history
    assert "incremental" in modes  # the test exercises the incremental pass, not only the fallback


def test_unchanged_hosts_keep_their_routes():
    world = World(random.Random(0))
    for name in ("s1", "s2"):
        world.put(service(name))
        world.put(endpoint_slice(name + "-x", name, ["10.0.0.1"]))
    world.put(ingress("one", rule("a.test", path("/", "s1"))))
    world.put(ingress("two", rule("b.test", path("/", "s2"))))
    translator = Translator()
    first = translator.translate(world.snapshot())
    world.put(ingress("one", rule("a.test", path("/new", "s1"))))
    second = translator.translate(world.snapshot())
    assert translator.last_mode == "incremental: 1 Ingresses, 1 hosts"
    assert second.table.hosts.get("b.test") is first.table.hosts.get("b.test")
    assert "/new" in second.table.hosts.get("a.test").prefix
    assert "/new" not in first.table.hosts.get("a.test").prefix  # the previous configuration is untouched
    # An EndpointSlice of s2 recompiles b.test only.
    world.put(endpoint_slice("s2-x", "s2", ["10.0.0.2"]))
    third = translator.translate(world.snapshot())
    assert translator.last_mode == "incremental: 1 Ingresses, 1 hosts"
    assert third.table.hosts.get("a.test") is second.table.hosts.get("a.test")
    assert third.table.lookup("b.test", "/").backend.endpoints == (("10.0.0.2", 8080),)


@pytest.mark.parametrize("change", ["wildcard", "ingress-class", "default-backend"])
def test_changes_with_effects_across_hosts_translate_everything(change):
    world = World(random.Random(0))
    world.put(service("s1"))
    world.put(endpoint_slice("s1-x", "s1", ["10.0.0.1"]))
    world.put(ingress("one", rule("a.test", path("/", "s1"))))
    translator = Translator()
    translator.translate(world.snapshot())
    if change == "wildcard":
        world.put(ingress("two", rule("*.test", path("/", "s1"))))
    elif change == "ingress-class":
        world.put({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "other"},
                   "spec": {"controller": "example.com/other"}})
    else:
        world.put(ingress("two", default_backend={"service": {"name": "s1", "port": {"number": 80}}}))
    snapshot = world.snapshot()
    got = translator.translate(snapshot)
    assert translator.last_mode == "full"
    assert canonical(got) == canonical(translate(snapshot, Settings()))


def test_unchanged_snapshot_is_the_same_configuration():
    world = build_world(1)
    translator = Translator()
    snapshot = world.snapshot()
    first = translator.translate(snapshot)
    assert translator.translate(snapshot) is first


def test_new_source_diagnostics_with_the_same_objects_are_reported():
    """A manifest that stops parsing keeps its objects (the same ones) and adds a diagnostic."""
    from ingressd.diagnostics import ERROR, Diagnostic

    world = build_world(2)
    translator = Translator()
    before = world.snapshot()
    translator.translate(before)
    broken = Diagnostic(ERROR, "cannot parse: unclosed flow sequence", "extra.yaml")
    snapshot = Snapshot(objects=before.objects, diagnostics=(broken,))
    assert broken in translator.translate(snapshot).diagnostics
    fixed = Snapshot(objects=before.objects)
    assert broken not in translator.translate(fixed).diagnostics
    assert canonical(translator.translate(fixed)) == canonical(translate(fixed, Settings()))
