"""Issue 10: a change among many Ingresses costs what it touches, and gives what a whole pass gives.

- An edited Ingress recompiles its hosts only: every other host keeps the very same ``HostRoutes``,
  ``Route``, metric-label tuple and ``Certificate`` objects.
- The manifest directory's snapshot patched from the previous one equals one built whole (random
  edits over files, duplicates and broken files included).
- Configuration deltas (what worker processes receive) rebuild exactly the new configuration.
- One annotation set is parsed once, except options holding per-Ingress state (rate limits)."""

from __future__ import annotations

import pickle
import random
import re

import pytest
import yaml

from ingressd.config import Settings, Snapshot
from ingressd.config_delta import apply_delta, delta
from ingressd.incremental import Translator
from ingressd.sources.manifests import ManifestDirectory
from ingressd.translate import translate

from test_incremental import build_world, edit
from test_incremental import canonical as _canonical
from unitkit import NGINX, cert_for, endpoint_slice, ingress, path, rule, service, tls_secret

def canonical(config) -> str:
    """test_incremental's canonical form, without object addresses (a pickled copy is elsewhere)."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(_canonical(config)))


N = 300  # Ingresses over 10 files: enough for the incremental pass (a change is under a quarter of them)


def many(directory, n: int = N, files: int = 10, annotations=None) -> list:
    cert, key = cert_for("*.many.test")
    paths = []
    for f in range(files):
        docs = [tls_secret("tls", cert, key, namespace=f"ns{f}")]
        for i in range(f * n // files, (f + 1) * n // files):
            docs.append(service(f"svc{i}", namespace=f"ns{f}"))
            docs.append(endpoint_slice(f"svc{i}-1", f"svc{i}", ["10.0.0.1"], namespace=f"ns{f}"))
            docs.append(ingress(f"ing{i}", rule(f"h{i}.many.test", path("/", f"svc{i}")), namespace=f"ns{f}",
                                annotations=annotations, tls=[{"hosts": [f"h{i}.many.test"], "secretName": "tls"}]))
        target = directory / f"ns{f}.yaml"
        target.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        paths.append(target)
    return paths


def rename_host(target, name: str, host: str) -> None:
    docs = list(yaml.safe_load_all(target.read_text()))
    for doc in docs:
        if doc["kind"] == "Ingress" and doc["metadata"]["name"] == name:
            doc["spec"]["rules"][0]["host"] = host
            doc["spec"]["tls"][0]["hosts"] = [host]
    target.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_an_edited_ingress_recompiles_its_hosts_and_reuses_every_other_object(tmp_path):
    files = many(tmp_path)
    source = ManifestDirectory(tmp_path)
    source.scan()
    translator = Translator(Settings())
    first = translator.translate(source.snapshot())
    assert translator.last_mode == "full" and len(first.table.hosts) == N
    rename_host(files[4], "ing125", "renamed.many.test")
    assert source.scan()
    snapshot = source.snapshot()
    assert snapshot.changed == {("Ingress", "ns4", "ing125")}  # the other 89 objects of the file are the same
    second = translator.translate(snapshot)
    assert translator.last_mode == "incremental: 1 Ingresses, 2 hosts"
    assert second.table.hosts.get("h125.many.test") is None
    assert second.table.hosts.get("renamed.many.test").prefix[""].backend.service == "svc125"
    reused = 0
    for host, routes in first.table.hosts.exact.items():
        if host == "h125.many.test":
            continue
        again = second.table.hosts.exact[host]
        assert again is routes
        assert again.prefix[""] is routes.prefix[""] and again.fallback is routes.fallback
        assert again.prefix[""].labels is routes.prefix[""].labels  # metric labels reused
        assert second.certificates.exact[host] is first.certificates.exact[host]
        reused += 1
    assert reused == N - 1
    assert canonical(second) == canonical(translate(snapshot, Settings()))


def test_an_edit_sends_workers_a_delta_of_its_hosts_only(tmp_path):
    files = many(tmp_path)
    source = ManifestDirectory(tmp_path)
    source.scan()
    translator = Translator(Settings())
    first = translator.translate(source.snapshot())
    rename_host(files[2], "ing70", "renamed.many.test")
    source.scan()
    second = translator.translate(source.snapshot())
    change = delta(first, second)
    assert sorted(change.routes.exact) == ["renamed.many.test"] and change.routes.removed_exact == ("h70.many.test",)
    assert sorted(change.certificates.exact) == ["renamed.many.test"]
    payload = pickle.dumps(("delta", 2, 1, change), protocol=pickle.HIGHEST_PROTOCOL)
    assert len(payload) < len(pickle.dumps(second, protocol=pickle.HIGHEST_PROTOCOL)) / 20
    worker_copy = pickle.loads(pickle.dumps(first, protocol=pickle.HIGHEST_PROTOCOL))  # what a worker holds
    rebuilt = apply_delta(worker_copy, pickle.loads(payload)[3])
    assert canonical(rebuilt) == canonical(second)
    assert rebuilt.table.hosts.exact["h1.many.test"] is worker_copy.table.hosts.exact["h1.many.test"]
    assert delta(first, translate(source.snapshot(), Settings())) is None  # a whole pass: send it whole


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_give_deltas_that_rebuild_the_configuration(seed):
    world = build_world(seed)
    translator = Translator(Settings())
    previous = translator.translate(world.snapshot())
    worker = pickle.loads(pickle.dumps(previous))
    for _ in range(25):
        edit(world)
        config = translator.translate(world.snapshot())
        change = delta(previous, config)
        worker = pickle.loads(pickle.dumps(config)) if change is None else apply_delta(
            worker, pickle.loads(pickle.dumps(change)))
        assert canonical(worker) == canonical(config)
        previous = config


def snapshot_facts(snapshot):
    return ([(o.meta.key, o.meta.origin, repr(o)) for o in snapshot.objects], sorted(map(str, snapshot.diagnostics)),
            sorted(snapshot.by_key))


@pytest.mark.parametrize("seed", range(8))
def test_patched_manifest_snapshots_equal_whole_ones(tmp_path, seed):
    rng = random.Random(seed)
    names = [f"f{i}.yaml" for i in range(12)]

    def content() -> str:
        if rng.random() < 0.08:
            return "a: [broken\n"
        docs = []
        for _ in range(rng.randint(0, 4)):
            name = "dup" if rng.random() < 0.03 else f"ing{rng.randrange(10_000)}"  # "dup" twice: a duplicate
            docs.append(ingress(name, rule(f"{name}-{rng.randrange(3)}.test", path("/", "svc"))))
        if rng.random() < 0.2:
            docs.append(ingress("bad", rule("UPPER_case!", path("/", "svc"))))
        return yaml.safe_dump_all(docs) if docs else ""

    for name in names:
        (tmp_path / name).write_text(content())
    source = ManifestDirectory(tmp_path)
    source.scan()
    source.snapshot()
    patched_any = False
    for _ in range(30):
        for _ in range(rng.randint(1, 2)):
            target = tmp_path / rng.choice(names)
            if target.exists() and rng.random() < 0.15:
                target.unlink()
            else:
                target.write_text(content() + f"# {rng.random()}\n")  # always a new size or content
        source.scan()
        patched = source.snapshot()
        # the same files' objects made whole (a fresh source would not keep broken files' last versions)
        index, objects, diagnostics = source._whole(source._files)
        whole = Snapshot(objects, diagnostics, patched.version, None, frozenset(), index)
        assert snapshot_facts(patched) == snapshot_facts(whole)
        fresh = ManifestDirectory(tmp_path)
        fresh.scan()
        if not any(d.message.endswith("keeping its previous version") for d in patched.diagnostics):
            assert snapshot_facts(patched) == snapshot_facts(fresh.snapshot())
        patched_any += not source._duplicates
    assert patched_any > 10


def test_one_annotation_set_is_parsed_once_but_rate_limits_stay_per_ingress():
    docs = [service("svc"), endpoint_slice("svc-1", "svc", ["10.0.0.1"])]
    plain = {NGINX + "proxy-body-size": "8m"}
    limited = {NGINX + "limit-connections": "2"}
    for i in range(3):
        docs.append(ingress(f"p{i}", rule(f"p{i}.test", path("/", "svc")), annotations=plain))
        docs.append(ingress(f"l{i}", rule(f"l{i}.test", path("/", "svc")), annotations=limited))
    from unitkit import objects
    from ingressd.config import Snapshot

    config = translate(Snapshot(objects=objects(*docs)), Settings())
    plain_options = {id(config.table.hosts.get(f"p{i}.test").prefix[""].options) for i in range(3)}
    limits = [config.table.hosts.get(f"l{i}.test").prefix[""].options.conn_limit for i in range(3)]
    assert len(plain_options) == 1
    assert len({id(limit) for limit in limits}) == 3 and all(limit.limit == 2 for limit in limits)
    assert config.table.hosts.get("p0.test").prefix[""].options.body_size_limit == 8 << 20


def test_controller_logs_thousands_of_accepted_ingresses_in_one_line(tmp_path, caplog):
    import logging

    from ingressd.app import ACCEPTED_LOG_LIMIT, Controller
    from ingressd.config import Config, Snapshot
    from ingressd.routing import RouteTable
    from unitkit import objects

    many_docs = [ingress(f"i{k}", rule(f"i{k}.test", path("/", "svc"))) for k in range(ACCEPTED_LOG_LIMIT + 1)]
    first = Snapshot(objects=objects(*many_docs), version="1")
    controller = Controller.__new__(Controller)  # only report(): no source, no plane
    from ingressd.diagnostics import Reporter
    controller.reporter = Reporter(logging.getLogger("ingressd"))
    controller._ingresses, controller.snapshot_reported = set(), None
    with caplog.at_level(logging.INFO, logger="ingressd"):
        controller.report(first, Config(table=RouteTable()))
    lines = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert lines == [f"{ACCEPTED_LOG_LIMIT + 1} Ingresses accepted (each one logged at debug level)"]
    caplog.clear()
    edited = [*first.objects[1:], objects(ingress("i0", rule("other.test", path("/", "svc"))))[0]]
    second = Snapshot(objects=tuple(edited), version="2", since="1", changed=frozenset({("Ingress", "default", "i0")}))
    with caplog.at_level(logging.INFO, logger="ingressd"):
        controller.report(second, Config(table=RouteTable()))
    assert [r.getMessage() for r in caplog.records] == ["Ingress default/i0 accepted"]


class NoClient:
    server = "http://unused"
    namespace = "default"
    _sync_factory = None


@pytest.mark.parametrize("seed", range(6))
def test_patched_kubernetes_snapshots_equal_whole_ones(seed):
    from ingressd.kube.client import ENDPOINT_SLICES, INGRESSES, SECRETS, SERVICES
    from ingressd.sources.kubernetes import KubernetesSource

    rng = random.Random(seed)
    source = KubernetesSource(NoClient())
    handlers = {rt: source._event_handler(rt) for rt in (INGRESSES, SERVICES, ENDPOINT_SLICES, SECRETS)}
    cert, key = cert_for("a.test")

    def document(rt, name, namespace):
        if rt is INGRESSES:
            host = rng.choice(["a.test", "b.test", "not a host!"])  # sometimes invalid: a diagnostic
            doc = ingress(name, rule(host, path("/", "svc")), namespace=namespace)
        elif rt is SERVICES:
            doc = service(name, namespace=namespace)
        elif rt is ENDPOINT_SLICES:
            doc = endpoint_slice(name, "svc", [f"10.0.0.{rng.randrange(9)}"], namespace=namespace)
        else:
            doc = tls_secret(name, cert, key, namespace=namespace)
        doc["metadata"]["resourceVersion"] = str(rng.random())
        return doc

    def event():
        rt = rng.choice(list(handlers))
        name, namespace = f"o{rng.randrange(40)}", rng.choice(["default", "team"])
        if rng.random() < 0.2:
            handlers[rt]("delete", (namespace, name), None)
        else:
            handlers[rt]("set", (namespace, name), document(rt, name, namespace))

    for _ in range(200):
        event()
    previous = source.snapshot()
    patched = 0
    for _ in range(40):
        for _ in range(rng.randint(1, 3)):
            event()
        patched += source._patched(previous, set(source._touched)) is not None
        snapshot = source.snapshot()
        objects, diagnostics, index = source._whole()
        assert snapshot.objects == objects and snapshot.diagnostics == diagnostics and snapshot.by_key == index
        assert all(snapshot.by_key[k] is previous.by_key[k] for k in previous.by_key.keys() - snapshot.changed
                   if k in snapshot.by_key)
        previous = snapshot
    assert patched > 20


def test_a_small_change_is_known_small_before_it_is_translated(tmp_path):
    files = many(tmp_path, n=40, files=2)
    source = ManifestDirectory(tmp_path)
    source.scan()
    translator = Translator(Settings())
    assert not translator.is_small(source.snapshot())  # nothing translated yet: a whole pass
    translator.translate(source.snapshot())
    rename_host(files[0], "ing3", "renamed.many.test")
    source.scan()
    snapshot = source.snapshot()
    assert translator.is_small(snapshot) and not translator.is_small(snapshot, limit=0)
