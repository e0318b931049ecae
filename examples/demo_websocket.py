"""Send messages over a websocket through the demo's ingressd and print what comes back.

    python examples/demo_websocket.py [--port 8080] [--host plain.localhost] hello world

It connects to 127.0.0.1 with the Host it is given, so no name needs to resolve (Python, unlike
curl, does not resolve *.localhost). Standard library only, like the demo's backend, whose echo it
talks to through ingressd.
"""

import argparse
import base64
import os
import socket
import sys

from demo_backend import CLOSE, frame_bytes, read_frame

TEXT = 0x1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="plain.localhost")
    parser.add_argument("messages", nargs="+")
    args = parser.parse_args()
    with socket.create_connection(("127.0.0.1", args.port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {args.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        rfile = sock.makefile("rb")
        status = rfile.readline().decode().strip()
        while rfile.readline() not in (b"\r\n", b""):
            pass
        if " 101 " not in status + " ":
            print(f"no websocket: {status}", file=sys.stderr)
            return 1
        print(status)
        for message in args.messages:
            sock.sendall(frame_bytes(0x80 | TEXT, message.encode(), os.urandom(4)))
            frame = read_frame(rfile)
            if frame is None:
                print("the connection closed", file=sys.stderr)
                return 1
            print(f"echo: {frame[2].decode()}")
        sock.sendall(frame_bytes(0x80 | CLOSE, b"\x03\xe8", os.urandom(4)))  # 1000: normal closure
        read_frame(rfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
