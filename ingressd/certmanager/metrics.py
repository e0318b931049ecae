"""The certificate manager's metrics: orders by issuer and result, and the next renewal times.

(Certificate expiry per served host, ``nginx_ingress_controller_ssl_expire_time_seconds``, comes
from the served configuration in ``ingressd/metrics.py``, managed or not.)
"""

from __future__ import annotations

from prometheus_client.metrics_core import Metric

ORDERS = "ingressd_certificate_orders"
NEXT_RENEWAL = "ingressd_certificate_next_renewal_timestamp_seconds"
RESULTS = ("success", "invalid", "rate_limited", "unreachable", "error")


class CertificateCollector:
    """Reads the manager's counters at scrape time."""

    def __init__(self, manager):
        self.manager = manager

    def collect(self):
        orders = Metric(ORDERS, "Certificate orders by issuer and result (" + ", ".join(RESULTS) + ")", "counter")
        for (issuer, result), count in sorted(self.manager.orders.items()):
            orders.add_sample(ORDERS + "_total", {"issuer": issuer, "result": result}, count)
        yield orders
        renewal = Metric(NEXT_RENEWAL, "When ingressd next renews the certificate of a Secret (unix time)", "gauge")
        for (namespace, name), (issuer, when) in sorted(self.manager.next_renewal.items()):
            renewal.add_sample(NEXT_RENEWAL, {"namespace": namespace, "secret_name": name, "issuer": issuer}, when)
        yield renewal
