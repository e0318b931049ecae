"""A tiny demo backend: answers every request with what it received, as JSON, and echoes websockets.

    python examples/demo_backend.py --port 8081 --name hello

Standard library only, so the demo needs nothing beyond ``pip install .``: a request with
``Upgrade: websocket`` gets the RFC 6455 handshake and then every frame echoed back, so the
demo can show a websocket through ingressd (examples/demo_websocket.py is a client).
"""

import argparse
import base64
import hashlib
import json
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE, PING, PONG = 0x8, 0x9, 0xA


def frame_bytes(first: int, payload: bytes, mask: bytes = b"") -> bytes:
    """One frame with ``first`` as its FIN/opcode byte; clients mask theirs (a 4-byte ``mask``)."""
    n, bit = len(payload), 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    return head + mask + (masked(payload, mask) if mask else payload)


def masked(data: bytes, mask: bytes) -> bytes:
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def read_frame(rfile):
    """(FIN/opcode byte, opcode, unmasked payload) of the next frame, or None at the end."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", rfile.read(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", rfile.read(8))
    mask = rfile.read(4) if head[1] & 0x80 else b""
    data = rfile.read(length)
    if len(data) < length:
        return None
    return head[0], head[0] & 0x0F, masked(data, mask) if mask else data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            if self.headers.get("Upgrade", "").lower() == "websocket" and self.command == "GET":
                self.echo_websocket()
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            payload = json.dumps({
                "backend": args.name,
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers),
                "body_bytes": len(body),
            }, indent=2).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def echo_websocket(self) -> None:
            key = self.headers.get("Sec-WebSocket-Key", "").encode()
            accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            while (frame := read_frame(self.rfile)) is not None:
                first, opcode, payload = frame
                if opcode == PING:
                    first, opcode = 0x80 | PONG, PONG
                self.wfile.write(frame_bytes(first, payload))  # same FIN bit and opcode: fragments echo as fragments
                self.wfile.flush()
                if opcode == CLOSE:
                    return

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

        def log_message(self, *_):  # quiet: ingressd's logs are the interesting ones
            pass

    ThreadingHTTPServer((args.listen, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
