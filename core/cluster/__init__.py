"""The cluster driver: the Protocol the reconciler and the API use, the Kubernetes implementation, its manifests, and the in-memory cluster for tests."""
