"""The cluster driver on the official `kubernetes` client.

`cluster` is the driver (`KubernetesCluster`); it composes `client` (API calls: create-or-get, read,
delete, errors mapped to `ClusterUnavailableError`), `pod_status` (a pod's status → `PodObservation`) and
`nodes` (a node → `ObservedNode`, pods that are not ours → `ForeignUsage`). The manifests it creates are
in `remotegpu.core.cluster.manifests`.
"""
