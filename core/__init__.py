"""The domain core of RemoteGPU, one subpackage per domain.

`platform` (settings, database, locks, clock, errors, events) is what every domain stands on;
`environments` (spec, desired state, lifecycle), `capacity` (quotas, queue, claims), `cluster` (the
driver for Kubernetes and its stand-ins), `accounts`, `inventory`, `catalog` and `billing` hold the rest,
and `models` the schema. `core` depends only on `policies`; the API, the reconciler and the operator
tools depend on it.
"""
