"""Issue 18, item 4: the insight figures (opsux.store.insights) on SQLite and PostgreSQL, each checked against an
independent count in Python over the seeded rows; another tenant's runs never count."""
from __future__ import annotations

import random, statistics
from datetime import timedelta

from sqlalchemy import insert

from opsux.rules.status import normalize
from opsux.store.insights import Insights
from opsux.store.tables import operation_runs, utcnow

WORDS = [("completed", "succeeded"), ("completed", "failed"), ("completed", "partially_succeeded"),
         ("completed", "cancelled"), ("failed", "pending"), ("queued", "pending"), ("running", "pending"),
         (" COMPLETED", "Succeeded "), ("???", None)]


def seeded(world, n=400):
    rng, now = random.Random(7), utcnow().replace(microsecond=0)
    rows = []
    for i in range(n):
        tenant = world.contoso if i % 3 else world.fabrikam
        s, o = WORDS[rng.randrange(len(WORDS))]
        at = now - timedelta(minutes=rng.randrange(0, 40 * 24 * 60))
        done = s.strip().lower() in ("completed", "failed")
        code = rng.choice(["graph.503", "auth.401", None])
        rows.append(dict(tenant_id=tenant.id, type=rng.choice(["inventory.sync", "policy.sync", "directory_groups.sync"]),
                         status=s, outcome=o or "pending", created_at=at, updated_at=at,
                         started_at=at if done else None,
                         completed_at=at + timedelta(seconds=rng.randrange(1, 900)) if done else None,
                         summary_counts={}, context={},
                         failure_summary=[{"code": code, "message": "x"}] if code else []))
    with world.ops.engine.begin() as c: c.execute(insert(operation_runs), rows)
    return now, rows


def mine(rows, world, since=None, until=None):
    return [r for r in rows if r["tenant_id"] == world.contoso.id
            and (since is None or since <= r["created_at"] <= until)]


def test_every_figure_matches_an_independent_count(world):
    now, rows = seeded(world)
    for window, span, fmt in (("24h", timedelta(hours=24), "%Y-%m-%d %H:00"), ("7d", timedelta(days=7), "%Y-%m-%d"),
                              ("30d", timedelta(days=30), "%Y-%m-%d")):
        ins = Insights(world.ops.viewer(world.ada), window, now=now)
        got = mine(rows, world, now - span, now)
        o = ins.outcomes()
        for st in ("succeeded", "failed", "partial", "cancelled", "queued", "running", "unknown"):
            expect = {}
            for r in got:
                if normalize(r["status"], r["outcome"]).value == st:
                    k = r["created_at"].strftime(fmt); expect[k] = expect.get(k, 0) + 1
            assert {b: n for b, n in zip(o["bucket"], o[st]) if n} == expect, (window, st)
        du = ins.durations()
        for t, n, p50, p95 in zip(du["type"], du["runs"], du["p50"], du["p95"]):
            d = sorted((r["completed_at"] - r["started_at"]).total_seconds() for r in got
                       if r["type"] == t and r["completed_at"] is not None)
            assert n == len(d)
            assert abs(p50 - statistics.median(d)) < 1e-2
            if len(d) > 1: assert abs(p95 - statistics.quantiles(d, n=20, method="inclusive")[18]) < 1e-2
        failing = [r for r in got if normalize(r["status"], r["outcome"]).value in ("failed", "partial")]
        codes = {}
        for r in failing:
            c = r["failure_summary"][0]["code"] if r["failure_summary"] else ""
            codes[c] = codes.get(c, 0) + 1
        assert {x["code"]: x["runs"] for x in ins.failure_codes()} == codes
        types = {}
        for r in failing: types[r["type"]] = types.get(r["type"], 0) + 1
        assert {x["type"]: x["failed"] for x in ins.failing_types()} == types
        for x in ins.failing_types():
            assert x["total"] == sum(r["type"] == x["type"] for r in got)
            assert x["url"].startswith("/operations?status=failing&since=") and f"type={x['type']}" in x["url"]
    ins = Insights(world.ops.viewer(world.ada), now=now)
    done = [r for r in mine(rows, world) if r["completed_at"] and now - timedelta(minutes=600) <= r["completed_at"] <= now]
    assert ins.throughput(600) == len(done)
    queued = [r for r in mine(rows, world) if normalize(r["status"], r["outcome"]).value == "queued"]
    q = ins.queue()
    assert q["queued"] == len(queued)
    assert q["age_seconds"] == (now - min(r["created_at"] for r in queued)).total_seconds()


def test_filters_and_scope(world):
    now, rows = seeded(world)
    both = Insights(world.ops.viewer(world.cy), "30d", now=now)
    only_f = Insights(world.ops.viewer(world.cy), "30d", tenant=world.fabrikam, now=now)
    ada_f = Insights(world.ops.viewer(world.ada), "30d", tenant=world.fabrikam, now=now)
    total = lambda ins: sum(sum(v) for k, v in ins.outcomes().items() if k != "bucket")
    in_window = [r for r in rows if now - timedelta(days=30) <= r["created_at"] <= now]
    assert total(both) == len(in_window)
    assert total(only_f) == sum(r["tenant_id"] == world.fabrikam.id for r in in_window)
    assert total(ada_f) == 0 and ada_f.failure_codes() == [] and ada_f.queue()["queued"] == 0   # not Ada's tenant
    typed = Insights(world.ops.viewer(world.cy), "30d", type="policy.sync", now=now)
    assert total(typed) == sum(r["type"] == "policy.sync" for r in in_window)
    assert typed.durations()["type"] in ([], ["policy.sync"])


PLANS = {"outcomes_stmt": "ix_operation_runs_tenant_id_created_at", "durations_stmt": "ix_operation_runs_tenant_id_created_at",
         "failing_types_stmt": "ix_operation_runs_tenant_id_created_at", "failure_codes_stmt": "ix_operation_runs_unsucceeded",
         "throughput_stmt": "ix_operation_runs_tenant_id_completed_at", "queue_stmt": "ix_operation_runs_queued"}


def test_statements_can_use_the_insight_indexes(world):
    """Migration 0008's indexes serve every statement (docs/notes/insights_speed.md): the partial ones only while the
    statements state their conditions with the same constants, which this keeps true. Sequential and bitmap scans
    are switched off so the planner shows what it *can* use on a small table."""
    if world.ops.engine.dialect.name != "postgresql": return
    from sqlalchemy.dialects import postgresql
    seeded(world, n=200)
    ins = Insights(world.ops.viewer(world.cy), "30d")
    with world.ops.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE operation_runs"); c.exec_driver_sql("SET enable_seqscan = off"); c.exec_driver_sql("SET enable_bitmapscan = off")
        for name, index in PLANS.items():
            sql = str(getattr(ins, name)().compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            plan = "\n".join(r[0] for r in c.exec_driver_sql("EXPLAIN " + sql.replace("%", "%%")))
            assert index in plan, (name, plan)
