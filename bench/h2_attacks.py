#!/usr/bin/env python3
"""What the HTTP/2 attack classes do to ingressd and to the other clients, as a table (not a test).

    python3 bench/h2_attacks.py [--seconds S] [--only NAME,...] [--keep]

For each attack that tests/integration/test_http2.py asserts a GOAWAY (or a refusal) for, an attacker
process repeats it for ``--seconds``, reconnecting whenever ingressd ends its connection, while a
well-behaved client sends GET requests one after another on its own HTTP/2 connection; the client's
latency p50/p99 during the attack is compared with the same client alone, just before. The attacker
reports the GOAWAY code ingressd answered with and the time from its first attack frame to the end of
its connection (median over the repetitions).

Layout (2 cores): ingressd (``--workers 1``) pinned to core 0; the upstreams (bench.py's nginx for the
client's GET /, tests/support/backend.py for the attacks' /slow and /download),
the attacker and the well-behaved client on core 1 (the attacker competes with the client for that
core: the baseline is measured with an idle attacker process for that reason). Use
``bash bench/run.sh --h2`` first to install what bench/http2_load.py needs (this needs no more).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench as b  # bench/bench.py: processes, pinning, certificates, manifests

ATTACKS = ("rapid_reset", "continuation_flood", "hpack_bomb", "settings_flood", "ping_flood",
           "window_update_flood", "zero_window_reader", "too_many_streams")


# --- a raw HTTP/2 client (frames built by h2) ---------------------------------------------------------

def _h2():
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.settings
    import hyperframe.frame
    return h2, hyperframe


class Client:
    def __init__(self, port: int, cafile: str):
        h2, _ = _h2()
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=b.HOST)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.closed = False
        self.goaway = None  # (error code name, monotonic time)
        self.events: list = []
        self.send()

    def headers(self, path: str) -> list:
        return [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b.HOST.encode()), (b":path", path.encode())]

    def send(self, data: bytes | None = None) -> None:
        try:
            self.sock.sendall(data if data is not None else self.conn.data_to_send())
        except OSError:
            self.closed = True

    def read(self, timeout: float) -> list:
        h2, _ = _h2()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, ssl.SSLError):
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return []
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length and self.ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated) and self.goaway is None:
                self.goaway = (h2.errors.ErrorCodes(event.error_code).name
                               if event.error_code in set(h2.errors.ErrorCodes) else str(event.error_code),
                               time.monotonic())
        self.events += events
        self.send()
        return events

    ack = True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --- the attacker (a subprocess: python3 bench/h2_attacks.py --attacker NAME ...) ------------------------

def attack_once(name: str, port: int, cafile: str) -> tuple[str, float]:
    """One attack on a fresh connection: (GOAWAY code or what happened, seconds to the close)."""
    h2, hyperframe = _h2()
    c = Client(port, cafile)
    codes = h2.settings.SettingCodes
    started = time.monotonic()
    deadline = started + 10.0
    if name == "rapid_reset":
        for i in range(1000):
            c.conn.send_headers(1 + 2 * i, c.headers("/slow?delay=5"))
            c.conn.reset_stream(1 + 2 * i, h2.errors.ErrorCodes.CANCEL)
            if i % 20 == 19:
                c.send()
                if c.closed:
                    break
    elif name == "continuation_flood":
        frame = hyperframe.frame.HeadersFrame(1)
        frame.data = c.conn.encoder.encode(c.headers("/"))
        cont = hyperframe.frame.ContinuationFrame(1)
        cont.data = (b"\x40\x03abc\x03def" * 2000)[:16000]
        continuation = cont.serialize()
        started = time.monotonic()
        c.send(frame.serialize())
        for _ in range(200):
            c.send(continuation)
            if c.closed:
                break
    elif name == "hpack_bomb":
        frame = hyperframe.frame.HeadersFrame(1)
        frame.data = c.conn.encoder.encode(c.headers("/") + [(b"x-big", b"v" * 3000)] * 12)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        payload = frame.serialize()
        started = time.monotonic()
        c.send(payload)
    elif name in ("settings_flood", "ping_flood", "window_update_flood"):
        for i in range(1000):  # framed first: the time to close counts from the first byte sent
            if name == "settings_flood":
                c.conn.update_settings({codes.HEADER_TABLE_SIZE: 4096 + i})
            elif name == "ping_flood":
                c.conn.ping(b"%08d" % i)
            else:
                c.conn.increment_flow_control_window(1)
        payload = c.conn.data_to_send()
        started = time.monotonic()
        c.send(payload)
    elif name == "zero_window_reader":
        c.ack = False
        c.conn.update_settings({codes.INITIAL_WINDOW_SIZE: 0})
        for stream_id in (1, 3, 5, 7):
            c.conn.send_headers(stream_id, c.headers("/download?size=100000000"), end_stream=True)
        c.send()
        deadline = started + ATTACK_HOLD  # it never ends by itself (SEND_TIMEOUT is 60 s): held, then dropped
    elif name == "too_many_streams":
        # 200 streams at a time where 128 are allowed, again as soon as they are answered or refused
        c.conn.remote_settings.max_concurrent_streams = 10_000
        next_id = 1
        deadline = started + ATTACK_HOLD
        while not c.closed and time.monotonic() < deadline:
            burst = set(range(next_id, next_id + 400, 2))
            next_id += 400
            for stream_id in sorted(burst):
                c.conn.send_headers(stream_id, c.headers("/slow?delay=1"), end_stream=True)
            c.send()
            while burst and not c.closed and time.monotonic() < deadline:
                for event in c.read(0.2):
                    if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        burst.discard(event.stream_id)
    while not c.closed and time.monotonic() < deadline:
        c.read(0.2)
    refused = sum(1 for e in c.events if isinstance(e, h2.events.StreamReset)
                  and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM)
    c.close()
    if c.goaway is not None:
        return c.goaway[0] + (f" ({refused} refused)" if refused else ""), c.goaway[1] - started
    if c.closed:
        return "closed, no GOAWAY", time.monotonic() - started
    return (f"{refused} streams refused" if refused else "still open"), float("nan")


ATTACK_HOLD = 5.0


def attacker_main(name: str, port: int, cafile: str, seconds: float) -> None:
    outcomes, times = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            outcome, elapsed = attack_once(name, port, cafile)
        except OSError as error:
            outcome, elapsed = f"error: {error}", float("nan")
        outcomes.append(outcome)
        times.append(elapsed)
    print(json.dumps({"outcomes": outcomes, "times": times}), flush=True)


# --- the well-behaved client ---------------------------------------------------------------------------

def measure_latency(port: int, cafile: str, seconds: float) -> dict:
    """GET / (nginx's 12 bytes) one at a time on one connection (reconnecting if needed): latencies in ms."""
    h2, _ = _h2()
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    c = Client(port, cafile)
    stream_id = 1
    while time.monotonic() < end:
        if c.closed:
            c.close()
            c = Client(port, cafile)
            stream_id = 1
        t0 = time.perf_counter()
        c.conn.send_headers(stream_id, c.headers("/"), end_stream=True)
        c.send()
        done = False
        limit = time.monotonic() + 5
        while not done and not c.closed and time.monotonic() < limit:
            for event in c.read(1.0):
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    done = True
        if done:
            latencies.append((time.perf_counter() - t0) * 1000)
        else:
            failures += 1
            c.closed = True
        stream_id += 2
    c.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None
    return {"n": len(latencies), "p50": pick(0.5), "p99": pick(0.99), "failures": failures}


# --- the run -----------------------------------------------------------------------------------------

def start_backend(ctx) -> int:
    script = b.REPO / "tests" / "support" / "backend.py"
    proc = b.Proc("backend", [sys.executable, str(script), "--listen", "a=127.0.0.1:0"], ctx.workdir, b.LOAD_CORE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in proc.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return json.loads(line)["listeners"]["a"]["port"]
        if not proc.alive():
            raise RuntimeError(f"backend exited:\n{proc.tail()}")
        time.sleep(0.05)
    raise RuntimeError("backend did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per attack (and per baseline)")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ATTACKS))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--attacker", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cafile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        if args.attacker != "idle":
            attacker_main(args.attacker, args.port, args.cafile, args.seconds)
        else:
            time.sleep(args.seconds)
            print(json.dumps({"outcomes": [], "times": []}), flush=True)
        return 0
    attacks = [a for a in (args.only.split(",") if args.only else ATTACKS) if a]
    b.prepare_machine()
    ctx = b.Context()
    ctx.workdir = Path(tempfile.mkdtemp(prefix="ingressd-bench-h2-attacks-"))
    cert, key, _ = b.make_certificate(ctx.workdir)
    b.section("HTTP/2 attacks: GOAWAY, time to close, and the latency another client sees")
    b.say(f"{time.strftime('%Y-%m-%d %H:%M:%S')}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{args.seconds:g} s per attack; work directory {ctx.workdir}")
    try:
        port = start_backend(ctx)
        ctx.ports = {"upstream": b.free_port()}
        b.start_upstream(ctx)
        manifests = ctx.workdir / "manifests"
        manifests.mkdir()
        # the well-behaved client's GET / goes to nginx (return 200); the attacks' /slow and /download
        # to the test backend
        b.write_yaml(manifests / "bench.yaml", [b.secret_doc("bench", "bench-tls", cert, key)]
                     + b.service_docs("bench", "upstream", ctx.ports["upstream"])
                     + b.service_docs("bench", "backend", port)
                     + [b.ingress_doc("bench", "bench", b.HOST, [("/", "upstream"), ("/slow", "backend"),
                                                                ("/download", "backend")], "bench-tls"),
                        {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                         "data": {"keep-alive-requests": "100000000"}}])
        proxy = b.start_ingressd(ctx, "ingressd", manifests, access_log=False)
        rows = []
        for name in attacks:
            quiet = run_phase("idle", proxy.https_port, str(cert), args.seconds)
            loud = run_phase(name, proxy.https_port, str(cert), args.seconds)
            if not proxy.alive():
                raise RuntimeError(f"ingressd died during {name}:\n{proxy.procs[0].tail()}")
            outcomes, times = loud["attacker"]["outcomes"], [t for t in loud["attacker"]["times"] if t == t]
            common = max(set(outcomes), key=outcomes.count) if outcomes else "-"
            before, during = quiet["client"], loud["client"]
            ratio = during["p99"] / before["p99"] if during["p99"] and before["p99"] else None
            rows.append([name, common, f"{statistics.median(times) * 1000:.0f}" if times else "-", str(len(outcomes)),
                         f"{b.fmt_ms(before['p50'])} / {b.fmt_ms(before['p99'])}",
                         f"{b.fmt_ms(during['p50'])} / {b.fmt_ms(during['p99'])}",
                         b.fmt_ratio(ratio), str(during["failures"])])
            b.say(f"  {name}: done")
        b.say("")
        b.table(rows, ["attack", "ingressd's answer (most often)", "ms to close", "attack conns",
                       "other client p50/p99 ms alone", "during attack", "p99 x", "failed"])
        b.say(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        b.stop_all()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(ctx.workdir)])
    return 0


def run_phase(attack: str, port: int, cafile: str, seconds: float) -> dict:
    """The attacker (or an idle stand-in) in its own process, the well-behaved client here, at once."""
    cmd = [sys.executable, os.path.abspath(__file__), "--attacker", attack, "--port", str(port), "--cafile", cafile,
           "--seconds", f"{seconds:g}"]
    if b.PIN:
        cmd = ["taskset", "-c", b.LOAD_CORE] + cmd
    attacker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=b.child_env(), start_new_session=True)
    try:
        time.sleep(0.3)  # the attack under way
        client = measure_latency(port, cafile, seconds - 0.5)
        out, err = attacker.communicate(timeout=seconds + 30)
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait(5)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"attacker {attack} reported nothing: {err[-2000:]}")
    return {"attacker": json.loads(lines[-1]), "client": client}


if __name__ == "__main__":
    sys.exit(main())
