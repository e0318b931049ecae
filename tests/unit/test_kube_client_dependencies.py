"""ingressd's Kubernetes modules import with whatever HTTP client lightkube brings.

lightkube 1.0 depends on ``httpx2`` instead of ``httpx``; a fresh machine then has no ``httpx``,
and an ``import httpx`` at runtime broke every Kubernetes test there (a CI failure). A fresh
interpreter with ``httpx`` made unimportable stands in for that machine.
"""

import subprocess
import sys

HIDE_HTTPX = "import sys; sys.modules['httpx'] = None\n"


def test_kubernetes_modules_import_without_httpx():
    code = HIDE_HTTPX + "import ingressd.kube.client, ingressd.sources.kubernetes\nprint('ok')\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
