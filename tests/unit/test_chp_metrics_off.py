"""ingressd chp keeps no request metrics without --metrics-port, as CHP (its MockMetrics), but
still stamps last_activity, which the Hub's idle culler needs."""

from dataplanekit import Rig

from ingressd.chp.server import ChpOptions, ChpProxy

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def chp(**options) -> ChpProxy:
    proxy = ChpProxy(ChpOptions(ip="127.0.0.1", port=8000, api_ip="127.0.0.1", api_port=8001, token="t", **options))
    proxy.store.add("/user/a", {"target": "http://10.0.0.1:8888"})
    proxy.apply()
    return proxy


def serve_one(proxy: ChpProxy) -> Rig:
    rig = Rig(proxy.plane.ctx.config)
    rig.recorder.metrics = proxy.plane.recorder.metrics  # the rig has its own recorder: the proxy's setting
    client = rig.client()
    client.send(b"GET /user/a/tree HTTP/1.1\r\nHost: hub\r\n\r\n")
    rig.upstream().send(OK)
    assert [r.status for r in client.responses()] == [200]
    return rig


def test_no_metrics_port_counts_nothing_but_activity():
    proxy = chp()
    assert proxy.plane.recorder.metrics is False
    activity = proxy.store.routes["/user/a"].activity
    activity.last -= 100
    before = activity.last
    rig = serve_one(proxy)
    assert rig.recorder.stats == {}
    assert activity.last > before


def test_metrics_port_counts_per_route():
    proxy = chp(metrics_ip="127.0.0.1", metrics_port=8002)
    assert proxy.plane.recorder.metrics is True
    rig = serve_one(proxy)
    assert [stats.count for stats in rig.recorder.stats.values()] == [1]
