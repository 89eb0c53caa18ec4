"""The domain core of RemoteGPU: settings, database, models, states and the drivers for outside systems.

`core` depends only on `policies`; the API, the reconciler and the operator tools depend on it.
"""
