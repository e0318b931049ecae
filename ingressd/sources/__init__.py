"""Sources of Kubernetes objects. Each produces immutable snapshots (``config.Snapshot``)."""
