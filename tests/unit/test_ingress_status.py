"""Ingress status planning (ingressd.kube.status): pure, no API."""

from __future__ import annotations

import pytest

from ingressd.kube.status import (Address, StatusPlanner, from_status, parse_status_addresses, service_addresses,
                                  status_patch)
from ingressd.objects import parse_object

IP1, IP2 = Address(ip="203.0.113.7"), Address(ip="203.0.113.8")
LB = (IP1,)


def service(spec: dict, status: dict | None = None):
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingressd", "namespace": "ingressd"},
           "spec": dict({"ports": [{"name": "http", "port": 80}]}, **spec)}
    if status is not None:
        doc["status"] = status
    (obj,) = parse_object(doc)
    return obj


def test_publish_status_address_takes_ips_and_names_repeated_or_comma_separated():
    assert parse_status_addresses(["203.0.113.8,203.0.113.7", "LB.Example.org.", "2001:db8::1"]) == (
        Address(hostname="lb.example.org"), Address(ip="2001:db8::1"), IP1, IP2)
    assert parse_status_addresses(["203.0.113.7", "203.0.113.7"]) == (IP1,)
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        parse_status_addresses(["not an address"])


def test_publish_service_addresses_by_service_type():
    lb = service({"type": "LoadBalancer", "clusterIP": "10.0.0.5", "externalIPs": ["198.51.100.1"]},
                 {"loadBalancer": {"ingress": [{"ip": "203.0.113.8"}, {"hostname": "lb.example.org"},
                                               {"junk": 1}, "junk"]}})
    assert service_addresses(lb) == (Address(hostname="lb.example.org"), Address(ip="198.51.100.1"), IP2)
    pending = service({"type": "LoadBalancer", "clusterIP": "10.0.0.5"}, {"loadBalancer": {}})
    assert service_addresses(pending) == ()  # no address yet: nothing to publish
    assert service_addresses(service({"clusterIP": "10.0.0.5"})) == (Address(ip="10.0.0.5"),)
    assert service_addresses(service({"type": "NodePort", "clusterIP": "10.0.0.5", "externalIPs": ["198.51.100.1"]})) \
        == (Address(ip="198.51.100.1"),)
    assert service_addresses(service({"type": "ExternalName", "externalName": "lb.example.org"})) == (
        Address(hostname="lb.example.org"),)
    assert service_addresses(service({"clusterIP": "None"})) == ()
    # a malformed status never rejects the Service itself
    assert service(spec={"type": "LoadBalancer"}, status={"loadBalancer": "x"}).load_balancer == ()


def test_status_patch_and_reading_status_back():
    addresses = (Address(hostname="lb.example.org"), IP1)
    patch = status_patch(addresses)
    assert patch == {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.org"},
                                                             {"ip": "203.0.113.7"}]}}}
    assert from_status(patch["status"]) == addresses
    assert status_patch(()) == {"status": {"loadBalancer": {"ingress": []}}}
    assert from_status(None) == from_status({"loadBalancer": {"ingress": [{"ports": []}]}}) == ()


def test_writes_only_what_differs_and_nothing_twice():
    planner = StatusPlanner()
    planner.observed({("web", "a"): (), ("web", "b"): LB, ("web", "c"): (IP2,)})
    present = [("web", "a"), ("web", "b"), ("web", "c")]
    writes = planner.plan(present, present, LB)
    assert writes == [(("web", "a"), LB), (("web", "c"), LB)]  # b already right
    for key, addresses in writes:
        planner.written(key, addresses)
    assert planner.plan(present, present, LB) == []  # the next snapshot writes nothing
    # the load balancer's address changes: every Ingress is updated once
    assert [key for key, _ in planner.plan(present, present, (IP2,))] == present


def test_unknown_addresses_write_nothing():
    planner = StatusPlanner()
    planner.observed({("web", "a"): LB})
    assert planner.plan([], [("web", "a")], None) == []


def test_clears_ingresses_no_longer_served_but_never_another_controllers():
    planner = StatusPlanner()
    other = (Address(hostname="nginx.example.org"),)
    planner.observed({("web", "ours"): (), ("web", "inherited"): LB, ("web", "nginx"): other})
    planner.written(("web", "ours"), LB)
    # none is served any more (e.g. their class moved to another controller)
    writes = planner.plan([], [("web", "ours"), ("web", "inherited"), ("web", "nginx")], LB)
    assert writes == [(("web", "inherited"), ()), (("web", "ours"), ())]  # "inherited": a former leader's
    for key, addresses in writes:
        planner.written(key, addresses)
    assert planner.plan([], [("web", "ours"), ("web", "inherited"), ("web", "nginx")], LB) == []
    # ours even after our addresses changed
    planner.written(("web", "ours"), LB)
    assert planner.plan([], [("web", "ours")], (IP2,)) == [(("web", "ours"), ())]


def test_forget_deleted_ingresses():
    planner = StatusPlanner()
    planner.observed({("web", "a"): ()})
    planner.written(("web", "a"), LB)
    planner.forget([])
    assert planner.known == {} and planner.ours == set()
    # a new Ingress of the same name gets its status written again
    assert planner.plan([("web", "a")], [("web", "a")], LB) == [(("web", "a"), LB)]


# --- the IO side, over an in-memory StatusClient (the API emulator runs it in tests/integration) ---

import asyncio  # noqa: E402

from certmanager_kit import ingress, snapshot  # noqa: E402
from ingressd.config import Settings  # noqa: E402
from ingressd.kube.publisher import NotFound, StatusPublisher  # noqa: E402


class MemoryStatuses:
    def __init__(self, statuses):
        self.statuses = dict(statuses)
        self.lists = 0
        self.patches = []

    async def list_ingress_statuses(self):
        self.lists += 1
        return dict(self.statuses)

    async def patch_ingress_status(self, namespace, name, patch):
        if (namespace, name) not in self.statuses:
            raise NotFound(name)
        self.patches.append(((namespace, name), patch))
        self.statuses[(namespace, name)] = patch["status"]
        return {"metadata": {"name": name, "namespace": namespace}, "status": patch["status"]}


def lb_service(ips):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingressd", "namespace": "ingressd"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_publisher_writes_as_leader_only_and_follows_the_published_service():
    ours = ingress("web", [], class_name="ingressd", namespace="default")
    theirs = ingress("other", [], class_name="nginx", namespace="default")
    client = MemoryStatuses({("default", "web"): {}, ("default", "other"): {
        "loadBalancer": {"ingress": [{"hostname": "nginx.example.org"}]}}})

    async def run():
        publisher = StatusPublisher(client, Settings(watch_ingress_without_class=False),
                                    publish_service="ingressd/ingressd")
        publisher.update(snapshot(ours, theirs))  # no Service yet: nothing known, nothing written
        publisher.set_leading(True)
        await publisher.sync()
        assert client.patches == []
        publisher.update(snapshot(ours, theirs, lb_service(["203.0.113.7"])))
        publisher.set_leading(False)
        await publisher.sync()  # followers never write
        assert client.patches == []
        publisher.set_leading(True)
        await publisher.sync()
        assert client.patches == [(("default", "web"), {"status": {"loadBalancer": {"ingress": [
            {"ip": "203.0.113.7"}]}}})]
        await publisher.sync()  # nothing changed: nothing written, not even listed again
        assert len(client.patches) == 1 and client.lists == 2
        publisher.update(snapshot(ours, theirs, lb_service(["203.0.113.8"])))
        await publisher.sync()
        assert client.statuses[("default", "web")] == {"loadBalancer": {"ingress": [{"ip": "203.0.113.8"}]}}
        assert client.statuses[("default", "other")]["loadBalancer"]["ingress"] == [{"hostname": "nginx.example.org"}]
        # the Ingress moves to another class: its status is cleared
        moved = ingress("web", [], class_name="nginx", namespace="default")
        publisher.update(snapshot(moved, theirs, lb_service(["203.0.113.8"])))
        await publisher.sync()
        assert client.statuses[("default", "web")] == {"loadBalancer": {"ingress": []}}
        assert len(client.patches) == 3

    asyncio.run(run())
