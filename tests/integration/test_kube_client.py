"""ingressd.kube.client against the API emulator (a separate process), objects written by kubectl."""

from __future__ import annotations

import asyncio

import pytest

from ingressd.kube.client import INGRESSES, LEASES, SECRETS, KubeClient, KubeError, Reflector

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: %s, namespace: default, labels: {app: web}}
spec: {defaultBackend: {service: {name: web, port: {number: 80}}}}
"""


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_reflector_follows_kubectl_and_relists_after_410(kubeapi):
    """emulator: watch resume, bookmarks, 410 Gone (expire) — the cache stays equal to the API."""
    kubeapi.apply(INGRESS % "one")

    async def main():
        client = KubeClient.connect(str(kubeapi.kubeconfig))
        seen = []
        reflector = Reflector(client, INGRESSES, None, lambda t, k, o: seen.append((t, k)))
        reflector.start()
        await asyncio.wait_for(reflector.synced.wait(), 5)
        assert set(reflector.objects) == {("default", "one")}
        await asyncio.to_thread(kubeapi.apply, INGRESS % "two")
        await until(lambda: ("default", "two") in reflector.objects)
        # 410: the history is compacted and every watch ends with an ERROR 410 event; an object
        # deleted meanwhile must disappear from the cache after the relist
        lists = reflector.lists
        await asyncio.to_thread(kubeapi.control, "expire")
        await asyncio.to_thread(kubeapi.kubectl, "delete", "ingress", "one")
        await until(lambda: set(reflector.objects) == {("default", "two")} and reflector.lists > lists)
        # bookmarks move the resourceVersion on without events
        rv = reflector.resource_version
        await asyncio.to_thread(kubeapi.kubectl, "create", "secret", "generic", "s", "--from-literal=a=b")
        await until(lambda: int(reflector.resource_version) > int(rv), timeout=3)
        await reflector.stop()
        await client.close()
        assert ("delete", ("default", "one")) in seen

    run(main())


def test_writes_conflicts_and_status(kubeapi):
    """emulator: 409 AlreadyExists / Conflict on a stale resourceVersion, status subresource, field selectors."""

    async def main():
        client = KubeClient.connect(str(kubeapi.kubeconfig))
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
                 "spec": {"holderIdentity": "a"}}
        created = await client.create(LEASES, "default", lease)
        with pytest.raises(KubeError) as exists:
            await client.create(LEASES, "default", lease)
        assert exists.value.code == 409 and exists.value.reason == "AlreadyExists"
        updated = await client.replace(LEASES, "default", "l", {**created, "spec": {"holderIdentity": "b"}})
        with pytest.raises(KubeError) as stale:
            await client.replace(LEASES, "default", "l", {**created, "spec": {"holderIdentity": "c"}})
        assert stale.value.code == 409 and stale.value.reason == "Conflict"
        assert (await client.get(LEASES, "default", "l"))["spec"]["holderIdentity"] == "b" == updated["spec"]["holderIdentity"]
        assert await client.get(LEASES, "default", "missing") is None

        await asyncio.to_thread(kubeapi.apply, INGRESS % "web")
        patched = await client.patch(INGRESSES, "default", "web",
                                     {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}, subresource="status")
        assert patched["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1"}]
        # the main endpoint does not change the status
        await client.patch(INGRESSES, "default", "web", {"status": {"loadBalancer": {}}, "metadata": {"labels": {"x": "y"}}})
        got = await client.get(INGRESSES, "default", "web")
        assert got["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1"}] and got["metadata"]["labels"]["x"] == "y"
        out = await asyncio.to_thread(kubeapi.kubectl, "get", "ingress", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
        assert out == "192.0.2.1"

        await client.create(SECRETS, "default", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                                 "data": {"tls.crt": "", "tls.key": ""}})
        await client.create(SECRETS, "default", {"metadata": {"name": "other"}, "stringData": {"password": "x"}})
        items, rv = await client.list(SECRETS, None, field_selector="type=kubernetes.io/tls")
        assert [i["metadata"]["name"] for i in items] == ["tls"] and rv
        await client.close()

    run(main())


def test_secret_store_never_overwrites_a_secret_it_does_not_own(kubeapi):
    """emulator: create, update with resourceVersion (409 on a stale one), label selectors."""
    from ingressd.certmanager.store import NotOwned
    from ingressd.kube.stores import KubeSecretStore, KubeStatusStore
    from ingressd.certmanager.store import CertStatus
    from ingressd.objects import Secret

    kubeapi.kubectl("create", "secret", "generic", "theirs", "--from-literal=tls.key=mine")
    before = kubeapi.get("/api/v1/namespaces/default/secrets/theirs")
    store = KubeSecretStore(KubeClient.connect(str(kubeapi.kubeconfig)).sync())
    with pytest.raises(NotOwned, match="theirs"):
        store.put(Secret.build("default", "theirs", "Opaque", {"tls.key": b"ours"}))
    assert kubeapi.get("/api/v1/namespaces/default/secrets/theirs") == before
    ours = Secret.build("default", "ours", "Opaque", {"tls.key": b"one"}, {"cert-manager.io/issuer-name": "x"})
    store.put(ours)
    store.put(Secret.build("default", "ours", "Opaque", {"tls.key": b"two"}))  # update: it owns it now
    assert store.get("default", "ours").data == {"tls.key": b"two"}
    assert [s.name for s in store.list()] == ["ours"] and store.owns(store.get("default", "ours"))
    statuses = KubeStatusStore(KubeClient.connect(str(kubeapi.kubeconfig)).sync(), "default")
    assert statuses.load() == {}
    statuses.save({"a": CertStatus(failures=2)})
    statuses.save({"a": CertStatus(failures=3)})
    assert statuses.load()["a"].failures == 3
