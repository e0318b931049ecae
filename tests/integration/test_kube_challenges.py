"""The leader's HTTP-01 answers reach every replica (ingressd.kube.challenges) through a ConfigMap on
the API emulator (tests/support/kubeapi, its own process). Two SharedChallenges in this process play
the two replicas, each with its own API connection; what they hand their data plane is recorded."""

from __future__ import annotations

import asyncio
import time

from ingressd.kube.challenges import SharedChallenges, configmap_name
from ingressd.kube.client import KubeClient
from ingressd.kube.rbac import allows


def test_followers_serve_the_leaders_answers_and_the_leader_waits_for_them(kubeapi):
    kubeapi.kubectl("create", "namespace", "ingressd")
    kubeapi.control("reset-requests")

    async def run():
        served = {"leader": [], "follower": []}
        replicas = {}
        for role in served:
            replicas[role] = SharedChallenges(KubeClient.connect(str(kubeapi.kubeconfig)), "ingressd",
                                              configmap_name("ingressd-leader"), served[role].append, spread=0.5)
            replicas[role].start()
        leader, follower = replicas["leader"], replicas["follower"]
        leader.set_leading(True)
        await asyncio.wait_for(asyncio.gather(leader.reflector.synced.wait(), follower.reflector.synced.wait()), 10)

        started = time.monotonic()
        await leader.publish({"tok-1": b"tok-1.thumb"})
        assert time.monotonic() - started >= 0.5  # the CA is told to validate only after the spread delay
        assert served["leader"][-1] == {"tok-1": b"tok-1.thumb"}
        assert served["follower"][-1] == {"tok-1": b"tok-1.thumb"}  # delivered within the delay
        await leader.publish({})  # withdrawn after validation
        assert served["follower"][-1] == {}

        # the follower becomes leader (failover): it keeps serving what the ConfigMap holds until it
        # publishes its own; the former leader, now following, serves the new leader's answers
        await leader.publish({"tok-2": b"tok-2.thumb"})
        leader.set_leading(False)
        follower.set_leading(True)
        await follower.publish({"tok-3": b"tok-3.thumb"})
        assert served["leader"][-1] == {"tok-3": b"tok-3.thumb"}
        for replica in replicas.values():
            await replica.close()
            await replica.client.close()

    asyncio.run(run())
    cm = kubeapi.kubectl("get", "configmap", "ingressd-leader-http01", "-n", "ingressd", "-o", "jsonpath={.data}")
    assert "tok-3" in cm and "tok-1" not in cm
    denied = [r for r in kubeapi.requests()
              if not allows(r["group"], r["resource"], r["verb"], r["namespace"] or None, "ingressd")]
    assert not denied, denied
