"""The environment pipeline: lease due environments, then load → process → apply, one step at a time.

- `leases`: `fetch_leases` claims due rows into short leases and returns each with what it holds.
- `process`: observes the cluster, chooses a trigger from the lifecycle table, acts at most once on the
  cluster and returns a `StepResult` (`results`). No database session is open there.
- `apply`: records the result in one statement (fencing check, lease-guarded row update, event).
- `pipeline`: runs steps on one lease until the environment waits, settles or the lease is lost.

Every step is safe to kill at any line: a repeated create finds the pod by name, a repeated delete or
release finds nothing left, and an allocation commits together with its phase change.
"""
