"""JupyterHub's proxy built in: configurable-http-proxy's REST API and routing (``ingressd chp``).

``routes`` is the pure route store (CHP's trie semantics, last_activity); ``api`` the pure REST API
handler; ``server`` the API listener and the ``ingressd chp`` process.
"""
