"""ALPN on the HTTPS listener: ``--http2``/``--no-http2`` and the ConfigMap's use-http2, seen by a
real TLS handshake (memory BIOs, no socket) against ``TLSContexts``' listener context."""

from __future__ import annotations

import ssl

from ingressd.config import Config, TLSSettings
from ingressd.dataplane.tls import TLSContexts
from ingressd.routing import RouteTable


def negotiated(contexts: TLSContexts, server_name: str | None = "any.example.com") -> str | None:
    """The protocol a client offering h2 and http/1.1 gets (``server_name`` None: no SNI, the
    listener's own context; else the context the SNI callback picks)."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = contexts.listener_context.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    for _ in range(10):
        for name, end, inbox, outbox, peer_in in (("c", client, c_in, c_out, s_in), ("s", server, s_in, s_out, c_in)):
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(outbox.read())
        if done == {"c", "s"}:
            break
    assert done == {"c", "s"}, "handshake did not complete"
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol()
    return server.selected_alpn_protocol()


def config(http2: bool) -> Config:
    return Config(RouteTable(), tls=TLSSettings(http2=http2))


def test_h2_offered_by_default_and_use_http2_false_stops_it_for_new_handshakes():
    contexts = TLSContexts(http2=True)
    contexts.apply(config(True))
    assert negotiated(contexts) == "h2"
    contexts.apply(config(False))  # the ConfigMap changed while serving
    assert negotiated(contexts) == "http/1.1" == negotiated(contexts, None)
    contexts.apply(config(True))
    assert negotiated(contexts) == "h2" == negotiated(contexts, None)


def test_no_http2_on_the_command_line_wins_over_use_http2():
    contexts = TLSContexts(http2=False)
    contexts.apply(config(True))
    assert negotiated(contexts) == "http/1.1" == negotiated(contexts, None)
    contexts.apply(config(False))
    contexts.apply(config(True))
    assert negotiated(contexts) == "http/1.1" == negotiated(contexts, None)
