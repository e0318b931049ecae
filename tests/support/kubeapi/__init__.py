"""A small Kubernetes API server emulator for tests, driven by the real ``kubectl``.

``server.py`` is the server (run as its own process: ``python -m tests.support.kubeapi.server``);
``fixture.py`` starts it on a free loopback port, writes a kubeconfig and offers ``kubectl(...)``.
Each emulated behaviour is one commented function in ``server.py``; tests that rely on one name
it (``# emulator: watch resume``...). What is *not* emulated: authentication/authorization
(everything is allowed; requests are logged for the RBAC check), admission, server-side apply,
protobuf, garbage collection, and strategic-merge-patch list merging (lists are replaced, as in a
JSON merge patch: enough for ``kubectl apply`` of whole objects).
"""
