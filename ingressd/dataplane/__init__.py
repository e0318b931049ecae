"""The data plane: listeners, TLS, HTTP proxying. Serves whatever configuration it was last given."""
