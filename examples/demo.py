"""Run the demo: two backends and ingressd serving examples/manifests on loopback.

    python examples/demo.py        (Ctrl-C stops everything)

Certificates come from the demo CA (examples/manifests/issuers.yaml) and are kept in
examples/.state (git-ignored): delete it to see them issued again.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HTTP, HTTPS, METRICS = 8080, 8443, 10254
STATE = os.path.join(HERE, ".state")


def main() -> int:
    processes = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "demo_backend.py"), "--port", str(port), "--name", name])
        for port, name in ((8081, "hello"), (8082, "echo"))
    ]
    processes.append(subprocess.Popen([
        sys.executable, "-m", "ingressd", "serve", "--manifests", os.path.join(HERE, "manifests"),
        "--listen", "127.0.0.1", "--http-port", str(HTTP), "--https-port", str(HTTPS),
        "--metrics-port", str(METRICS), "--state-dir", STATE,
    ]))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    print("ingressd did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        print(f"""
ingressd is serving examples/manifests. Try, from another shell:

  curl -i http://plain.localhost:{HTTP}/                        # routed to the echo backend
  curl -i http://demo.localhost:{HTTP}/                         # 308 redirect to HTTPS
  curl --cacert examples/demo-ca.crt https://demo.localhost:{HTTPS}/            # HTTPS, backend "hello"
  curl --cacert examples/demo-ca.crt https://demo.localhost:{HTTPS}/echo/x?y=1  # HTTPS, backend "echo"
  curl -i http://docs.localhost:{HTTP}/some/page?x=1            # 301 to mybinder.readthedocs.io, path kept
  curl -i http://play.localhost:{HTTP}/anything                 # 302 to a fixed URL
  curl -i http://unknown.localhost:{HTTP}/                      # default backend: 404
  python examples/demo_websocket.py hello world                 # a websocket through ingressd, echoed
  curl http://127.0.0.1:{METRICS}/metrics | grep requests       # Prometheus metrics
  ingressd routes --manifests examples/manifests                # the route table
  ingressd certs --manifests examples/manifests --state-dir examples/.state   # the certificates

Edit a file under examples/manifests and the change applies within a second. Ctrl-C stops.
""", flush=True)
        processes[-1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children on SIGTERM too
    sys.exit(main())
