"""Allocation and release against real Postgres, one transaction at a time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.workspaces import delete_workspace
from remotegpu.core.capacity.allocate import AllocationOptions, allocate
from remotegpu.core.capacity.quotas import QuotaLimits, admission_violations, read_quota, set_quota
from remotegpu.core.capacity.release import release, release_storage
from remotegpu.core.capacity.requests import AllocationOutcome, PortRequest
from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.states import DesiredState, GpuHealth, PortPurpose, Protocol
from remotegpu.core.inventory.hosts import cordon_host, drain_host, set_gpu_health, uncordon_host
from remotegpu.core.inventory.sync import ObservedNode, sync_inventory
from remotegpu.core.platform.pipeline import Statement
from remotegpu.policies.admission import QuotaRequest
from remotegpu.policies.placement import Strategy
from remotegpu.tests.allocation_world import GIB, make_environment, make_host, make_user, make_workspace


def test_allocation_claims_gpus_ports_and_counters_and_release_frees_them(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    ssh = PortRequest(22, Protocol.TCP, PortPurpose.SSH)
    jupyter = PortRequest(8888, Protocol.TCP, PortPurpose.JUPYTER)
    with db.begin() as connection:
        host = make_host(connection, gpus=4)
        request = make_environment(connection, workspace, user, gpus=2, ports=[ssh, jupyter])
    with db.begin() as connection:
        result = allocate(connection, request)
    assert result.outcome is AllocationOutcome.ALLOCATED
    assert result.host_id == host
    assert len(result.gpu_ids) == 2
    assert [(p.container_port, p.host_port) for p in result.ports] == [(22, 30000), (8888, 30001)]
    with db.connect() as connection:
        assert connection.execute(text("SELECT free FROM gpu_pools")).scalar_one() == 2
        assert read_quota(connection, "workspace", workspace).used_gpus == 2
        assert read_quota(connection, "user", user).running_environments == 1
        assert (
            connection.execute(
                text("SELECT host_id FROM environments WHERE id = :e"), {"e": request.environment_id}
            ).scalar_one()
            == host
        )

    with db.begin() as connection:
        freed = release(connection, request.environment_id)
    assert (freed.gpus, freed.ports) == (2, 2)
    with db.begin() as connection:
        assert not release(connection, request.environment_id).released_anything  # idempotent
    with db.connect() as connection:
        assert connection.execute(text("SELECT free FROM gpu_pools")).scalar_one() == 4
        assert read_quota(connection, "workspace", workspace).used_gpus == 0


def test_repeated_allocation_is_idempotent(db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=8)
        request = make_environment(connection, *tenant, gpus=2)
    with db.begin() as connection:
        first = allocate(connection, request)
    with db.begin() as connection:
        second = allocate(connection, request)
    assert second.outcome is AllocationOutcome.ALREADY_ALLOCATED
    assert second.host_id == first.host_id
    with db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM gpu_claims")).scalar_one() == 2


def test_released_gpus_are_claimable_again(db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=2)
        first = make_environment(connection, *tenant, gpus=2)
        second = make_environment(connection, *tenant, gpus=2)
    with db.begin() as connection:
        assert allocate(connection, first).outcome is AllocationOutcome.ALLOCATED
    with db.begin() as connection:
        assert allocate(connection, second).outcome is AllocationOutcome.NO_CAPACITY
    with db.begin() as connection:
        release(connection, first.environment_id)
    with db.begin() as connection:
        assert allocate(connection, second).outcome is AllocationOutcome.ALLOCATED


def test_bin_pack_prefers_the_fullest_host_that_fits_and_spread_the_emptiest(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        roomy = make_host(connection, gpus=8, name="a-roomy")
        snug = make_host(connection, gpus=2, name="b-snug")
        packed = make_environment(connection, *tenant, gpus=2)
        spread = make_environment(connection, *tenant, gpus=1)
    with db.begin() as connection:
        assert allocate(connection, packed).host_id == snug
    with db.begin() as connection:
        assert allocate(connection, spread, AllocationOptions(strategy=Strategy.SPREAD)).host_id == roomy


def test_model_is_matched_and_any_takes_one_model(db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=4, model="A100")
        h100 = make_host(connection, gpus=4, model="H100")
        wants_h100 = make_environment(connection, *tenant, gpus=3, model="H100")
        wants_any = make_environment(connection, *tenant, gpus=4)
        wants_l40 = make_environment(connection, *tenant, gpus=1, model="L40S")
    with db.begin() as connection:
        result = allocate(connection, wants_h100)
    assert (result.host_id, result.gpu_model) == (h100, "H100")
    with db.begin() as connection:
        assert allocate(connection, wants_any).gpu_model == "A100"
    with db.begin() as connection:
        refused = allocate(connection, wants_l40)
    assert refused.outcome is AllocationOutcome.NO_CAPACITY
    assert refused.reason == "waiting for 1×L40S"


def test_host_must_fit_cpu_memory_and_ports(db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=8, cpu_millis=4000, memory_bytes=8 * GIB, port_range=(31000, 31000))
        too_much_cpu = make_environment(connection, *tenant, gpus=1, cpu_millis=5000)
        too_much_memory = make_environment(connection, *tenant, gpus=1, memory_bytes=16 * GIB)
        two_ports = make_environment(connection, *tenant, gpus=1, ports=[PortRequest(22), PortRequest(8888)])
        one_port = make_environment(connection, *tenant, gpus=1, ports=[PortRequest(22)])
    for request in (too_much_cpu, too_much_memory, two_ports):
        with db.begin() as connection:
            assert allocate(connection, request).outcome is AllocationOutcome.NO_CAPACITY
    with db.begin() as connection:
        assert allocate(connection, one_port).ports[0].host_port == 31000


def test_cordoned_draining_down_hosts_and_unhealthy_gpus_are_never_picked(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        cordoned = make_host(connection, gpus=2)
        drained = make_host(connection, gpus=2)
        down = make_host(connection, gpus=2)
        sick = make_host(connection, gpus=2)
        connection.execute(text("UPDATE hosts SET health = 'down' WHERE id = :h"), {"h": down})
        requests = [make_environment(connection, *tenant, gpus=1) for _ in range(3)]
    with db.begin() as connection:
        cordon_host(connection, cordoned, "maintenance")
        drain_host(connection, drained)
        sick_gpus = (
            connection.execute(text("SELECT id FROM gpus WHERE host_id = :h ORDER BY index"), {"h": sick})
            .scalars()
            .all()
        )
        assert set_gpu_health(connection, sick_gpus[0], GpuHealth.UNHEALTHY, "XID 79")
        assert not set_gpu_health(connection, sick_gpus[0], GpuHealth.UNHEALTHY, "again")
    with db.begin() as connection:
        assert allocate(connection, requests[0]).gpu_ids == (sick_gpus[1],)
    with db.begin() as connection:
        assert allocate(connection, requests[1]).outcome is AllocationOutcome.NO_CAPACITY
    with db.begin() as connection:
        uncordon_host(connection, cordoned)
    with db.begin() as connection:
        assert allocate(connection, requests[2]).host_id == cordoned


def test_unhealthy_gpu_held_by_an_environment_leaves_the_pool_once(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=2)
        request = make_environment(connection, *tenant, gpus=1)
    with db.begin() as connection:
        (gpu,) = allocate(connection, request).gpu_ids
    with db.begin() as connection:
        set_gpu_health(connection, gpu, GpuHealth.UNHEALTHY)
    with db.begin() as connection:
        release(connection, request.environment_id)
    with db.connect() as connection:
        assert tuple(connection.execute(text("SELECT total, free FROM gpu_pools")).one()) == (1, 1)
    with db.begin() as connection:
        set_gpu_health(connection, gpu, GpuHealth.HEALTHY)
    with db.connect() as connection:
        assert tuple(connection.execute(text("SELECT total, free FROM gpu_pools")).one()) == (2, 2)


def test_quota_refusal_names_the_limit_and_the_excess(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=8)
        set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus=4))
        first = make_environment(connection, workspace, user, gpus=3)
        second = make_environment(connection, workspace, user, gpus=2)
    with db.begin() as connection:
        assert allocate(connection, first).outcome is AllocationOutcome.ALLOCATED
    with db.begin() as connection:
        refused = allocate(connection, second)
    assert refused.outcome is AllocationOutcome.OVER_QUOTA
    assert refused.reason == "workspace quota on GPUs: 3 of 4 in use, 2 requested, over by 1"
    with db.connect() as connection:
        fast = admission_violations(connection, workspace, user, QuotaRequest(2, None, 0, 0, 0))
    assert [v.message() for v in fast] == [refused.reason]


@pytest.mark.parametrize(
    ("limits", "dimension"),
    [
        (QuotaLimits(max_gpus_by_model={"H100": 1}), "H100 GPUs"),
        (QuotaLimits(max_cpu_millis=500), "CPU millicores"),
        (QuotaLimits(max_memory_bytes=GIB // 2), "memory bytes"),
        (QuotaLimits(max_storage_bytes=GIB), "storage bytes"),
        (QuotaLimits(max_running_environments=0), "running environments"),
    ],
)
def test_each_user_quota_dimension_is_enforced(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID], limits: QuotaLimits, dimension: str
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=8)
        set_quota(connection, "user", user, limits)
        request = make_environment(connection, workspace, user, gpus=2, model="H100", storage_bytes=2 * GIB)
    with db.begin() as connection:
        refused = allocate(connection, request)
    assert refused.outcome is AllocationOutcome.OVER_QUOTA
    assert refused.violations[0].subject == "user"
    assert refused.violations[0].dimension == dimension


def test_any_model_request_avoids_a_model_without_quota_headroom(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=2, model="H100")
        make_host(connection, gpus=8, model="A100")
        set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus_by_model={"H100": 0}))
        request = make_environment(connection, workspace, user, gpus=2)
    with db.begin() as connection:
        assert allocate(connection, request).gpu_model == "A100"


def test_lowered_quota_blocks_new_claims_but_keeps_running_ones(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=8)
        running = make_environment(connection, workspace, user, gpus=4)
        later = make_environment(connection, workspace, user, gpus=1)
    with db.begin() as connection:
        allocate(connection, running)
    with db.begin() as connection:
        set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus=2))
    with db.begin() as connection:
        assert allocate(connection, later).outcome is AllocationOutcome.OVER_QUOTA
    with db.connect() as connection:
        assert read_quota(connection, "workspace", workspace).used_gpus == 4


def test_stopped_deleted_or_changed_environments_are_not_allocated(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=8)
        stopped = make_environment(connection, *tenant)
        changed = make_environment(connection, *tenant)
        set_desired_state(connection, stopped.environment_id, DesiredState.STOPPED)
        connection.execute(
            text("UPDATE environments SET generation = 2 WHERE id = :e"), {"e": changed.environment_id}
        )
    for request, reason in ((stopped, "desired state is stopped"), (changed, "spec changed")):
        with db.begin() as connection:
            result = allocate(connection, request)
        assert result.outcome is AllocationOutcome.NOT_ALLOCATABLE
        assert reason in result.reason


def test_deleting_a_workspace_keeps_the_claims_asks_its_environments_to_go_and_blocks_new_claims(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=8)
        running = make_environment(connection, workspace, user, gpus=2)
        pending = make_environment(connection, workspace, user, gpus=2)
    with db.begin() as connection:
        allocate(connection, running)
    with db.begin() as connection:
        assert set(delete_workspace(connection, workspace, actor=user)) == {
            running.environment_id,
            pending.environment_id,
        }
    with db.begin() as connection:
        assert allocate(connection, pending).outcome is AllocationOutcome.NOT_ALLOCATABLE
    with db.connect() as connection:
        # the pod may still run: its GPUs stay claimed until the reconciler has deleted it
        assert connection.execute(text("SELECT free FROM gpu_pools")).scalar_one() == 6
        rows = connection.execute(
            text(
                "SELECT e.desired_state, e.desired_version,"
                " (SELECT count(*) FROM events v WHERE v.environment_id = e.id AND v.reason = 'DesiredDeleted'"
                "   AND v.actor_user_id = :u) AS events"
                " FROM environments e WHERE e.workspace_id = :w"
            ),
            {"w": workspace, "u": user},
        ).all()
    assert [tuple(row) for row in rows] == [("deleted", 2, 1), ("deleted", 2, 1)]


def test_storage_quota_is_held_from_a_stop_to_the_delete_and_a_restart_at_the_limit_fits(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        make_host(connection, gpus=2)
        set_quota(connection, "workspace", workspace, QuotaLimits(max_storage_bytes=10 * GIB))
        request = make_environment(connection, workspace, user, storage_bytes=10 * GIB)
        other = make_environment(connection, workspace, user, storage_bytes=GIB)
    for _ in range(2):  # run, stop, run again, stop
        with db.begin() as connection:
            assert allocate(connection, request).outcome is AllocationOutcome.ALLOCATED
        with db.begin() as connection:
            release(connection, request.environment_id)  # what a stop does; the volume stays
        with db.connect() as connection:
            assert read_quota(connection, "workspace", workspace).used_storage_bytes == 10 * GIB
    with db.begin() as connection:
        assert allocate(connection, other).outcome is AllocationOutcome.OVER_QUOTA
    with db.begin() as connection:
        assert release_storage(connection, request.environment_id) == 10 * GIB  # the delete removed it
        assert release_storage(connection, request.environment_id) == 0
    with db.begin() as connection:
        assert allocate(connection, other).outcome is AllocationOutcome.ALLOCATED
        release(connection, other.environment_id)
        release_storage(connection, other.environment_id)


def test_a_gpu_its_node_no_longer_reports_is_lost_and_stays_out_of_the_pool_whatever_its_health(
    db: Engine,
) -> None:
    with db.begin() as connection:
        host = make_host(connection, gpus=2, name="n1")
        node = ObservedNode("n1", True, 1, "H100", 80 * GIB, (), 128_000, 1024 * GIB, {})
        sync_inventory(connection, [node])
    with db.begin() as connection:
        gpu = connection.execute(
            text("SELECT id FROM gpus WHERE host_id = :h AND index = 1"), {"h": host}
        ).one()
        assert connection.execute(text("SELECT total, free FROM gpu_pools")).one() == (1, 1)
        assert set_gpu_health(connection, gpu.id, GpuHealth.UNHEALTHY)  # an admin's mark: still out
        assert connection.execute(text("SELECT total, free FROM gpu_pools")).one() == (1, 1)


def test_drain_asks_the_environments_on_the_host_to_stop(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        host = make_host(connection, gpus=8)
        request = make_environment(connection, *tenant, gpus=1)
    with db.begin() as connection:
        allocate(connection, request)
    with db.begin() as connection:
        assert drain_host(connection, host, "rack maintenance") == [request.environment_id]
    with db.begin() as connection:
        release(connection, request.environment_id)  # what the reconciler's stop does


def test_without_locks_the_unique_index_still_refuses_a_second_claim(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        make_host(connection, gpus=2)
        first = make_environment(connection, *tenant, gpus=1)
        second = make_environment(connection, *tenant, gpus=1)

    def racer_commits_the_same_gpu(point: str) -> None:
        if point == "gpus-chosen":
            with db.begin() as racer:
                assert allocate(racer, first, unsafe).outcome is AllocationOutcome.ALLOCATED

    unsafe = AllocationOptions(unsafe_skip_host_lock=True, unsafe_skip_quota_lock=True)
    paused = AllocationOptions(
        unsafe_skip_host_lock=True, unsafe_skip_quota_lock=True, pause=racer_commits_the_same_gpu
    )
    with pytest.raises(IntegrityError, match="uq_gpu_claims_gpu_id_active"), db.begin() as connection:
        allocate(connection, second, paused)
    with db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM gpu_claims")).scalar_one() == 1


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
def test_a_release_reads_only_its_own_claims_host_and_quotas_however_many_there_are(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID], plan_cache_mode: str
) -> None:
    """The hosts a release locks and the release itself find an environment's active GPU claims through
    an index of their own, not by reading every active claim of the cluster, and touch its host's and its
    two quotas' rows alone, not every host's and every tenant's (a release's cost must not grow with the
    cluster or the installation). Prepared statements run on generic plans, so both kinds are checked."""
    from remotegpu.core.capacity.release import _ACTIVE_HOSTS_SQL, _RELEASE_SQL

    workspace, user = tenant
    requests = []
    with db.begin() as connection:
        hosts = [make_host(connection, gpus=8) for _ in range(30)]
        requests = [make_environment(connection, workspace, user, gpus=8) for _ in hosts]
        for _ in range(20):  # other tenants' quotas
            other = make_user(connection)
            set_quota(connection, "user", other, QuotaLimits(max_gpus=8))
            set_quota(connection, "workspace", make_workspace(connection, other), QuotaLimits(max_gpus=8))
    for _ in range(3):  # released claims stay, as history does in a cluster that ran for a while
        for request in requests:
            with db.begin() as connection:
                assert allocate(connection, request).outcome is AllocationOutcome.ALLOCATED
        for request in requests:
            with db.begin() as connection:
                release(connection, request.environment_id)
    for request in requests:
        with db.begin() as connection:
            assert allocate(connection, request).outcome is AllocationOutcome.ALLOCATED
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE gpu_claims"))  # as autovacuum would: no dead entries counted
    with db.connect() as connection:
        connection.execute(text(f"SET plan_cache_mode = {plan_cache_mode}"))
        mine = requests[7].environment_id
        host = connection.execute(
            text("SELECT host_id FROM environments WHERE id = :e"), {"e": mine}
        ).scalar_one()
        for statement, parameters in (
            (_ACTIVE_HOSTS_SQL, {"env": mine}),
            (_RELEASE_SQL, {"env": mine, "hosts": [host]}),
        ):
            (plan,) = connection.execute(
                text("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.text), parameters
            ).scalar_one()
            on_claims = [
                node
                for node in _plan_nodes(plan["Plan"])
                if node.get("Relation Name") == "gpu_claims"
                or "gpu_claims" in str(node.get("Index Name", ""))
            ]
            assert on_claims, plan
            read = [(node["Node Type"], node.get("Index Name"), node["Actual Rows"]) for node in on_claims]
            assert max(int(node["Actual Rows"]) for node in on_claims) <= 8, read
            scans = [
                (node["Relation Name"], node["Node Type"], node["Actual Rows"])
                for node in _plan_nodes(plan["Plan"])
                if node.get("Relation Name") in {"hosts", "resource_quotas", "gpu_model_quotas"}
            ]
            assert all(int(rows) <= 2 for _, _, rows in scans), scans
        connection.rollback()


def test_a_release_told_the_host_skips_reading_it_and_a_wrong_guess_still_frees_everything(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        first, second = make_host(connection, gpus=8), make_host(connection, gpus=8)
        request = make_environment(connection, workspace, user, gpus=2)
    with db.begin() as connection:
        placed = allocate(connection, request).host_id
    assert placed in {first, second}
    elsewhere = second if placed == first else first

    with db.begin() as connection:
        freed = release(connection, request.environment_id, hosts=[elsewhere])  # a stale guess
    assert (freed.gpus, freed.host_ids) == (2, (placed,))
    with db.begin() as connection:
        assert allocate(connection, request).outcome is AllocationOutcome.ALLOCATED
    with db.begin() as connection:
        freed = release(connection, request.environment_id, hosts=[placed])
        statements = _statements_of(
            monkeypatch, lambda: release(connection, request.environment_id, hosts=[placed])
        )
    assert (freed.gpus, freed.host_ids) == (2, (placed,))
    assert statements == 2  # its host's lock and the release: nothing left, and no read of the hosts first
    with db.begin() as connection:
        assert not release(connection, request.environment_id, hosts=[elsewhere]).released_anything
        assert connection.execute(text("SELECT sum(free) FROM gpu_pools")).scalar_one() == 16
        assert read_quota(connection, "workspace", workspace).used_gpus == 0


def _statements_of(monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> int:
    """How many statements `call` sent through a release's pipelines."""
    from remotegpu.core.capacity import release as release_module
    from remotegpu.core.platform.pipeline import run_pipelined

    sent = 0

    def counting(connection: Connection, statements: list[Statement], **options: Any) -> Any:
        nonlocal sent
        sent += len(statements)
        return run_pipelined(connection, statements, **options)

    with monkeypatch.context() as patch:
        patch.setattr(release_module, "run_pipelined", counting)
        call()
    return sent


def test_allocation_and_release_update_the_environment_row_in_place(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    """No index covers what they write on the environment's row (its host, when, storage held), so the
    updates are HOT: no new entry in any of the table's indexes, two writes fewer per index and step."""
    with db.begin() as connection:
        make_host(connection, gpus=8)
        request = make_environment(connection, *tenant, gpus=2)
    for operation in (lambda c: allocate(c, request), lambda c: release(c, request.environment_id)):
        with db.begin() as connection:
            operation(connection)
            updated, in_place = connection.execute(
                text(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'environments'"
                )
            ).one()
        assert updated >= 1
        assert in_place == updated
