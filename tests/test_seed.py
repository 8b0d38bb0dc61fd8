"""seed(): realistic history on both databases, sanitized failures, a few active runs, notifications."""
import json
from collections import Counter

from sqlalchemy import func, select

from opsux.store.models import Notification, OperationRun
from opsux.store.seed import seed
from opsux.rules.status import normalize


def test_seed(ops):
    figures = seed(ops, runs=1500, tenants=3, users_per_tenant=2, random_seed=7)
    assert {k: figures[k] for k in ("tenants", "users", "runs")} == {"tenants": 3, "users": 6, "runs": 1500}
    with ops.engine.connect() as c:
        rows = c.execute(select(OperationRun)).mappings().all()
        n_notes = c.execute(select(func.count()).select_from(Notification)).scalar()
    assert len(rows) == 1500 and n_notes == figures["notifications"] > 0
    ux = Counter(normalize(r["status"], r["outcome"]).value for r in rows)
    assert ux["succeeded"] > 1000 and ux["partial"] > 20 and ux["failed"] > 20 and 1 <= ux["queued"] + ux["running"] <= 8
    assert {r["type"] for r in rows} <= set(ops.catalog.types()) and len({r["type"] for r in rows}) >= 8
    failures = [f for r in rows for f in r["failure_summary"]]
    blob = json.dumps(failures)
    assert failures and "eyJhbGci" not in blob and "Sup3rS3cret" not in blob and "Traceback" not in blob
    done = [r for r in rows if r["status"] == "completed" and r["outcome"] != "cancelled"]
    assert all(r["completed_at"] >= r["started_at"] >= r["created_at"] for r in done)
    assert all(r["tenant_id"] for r in rows)
    ids = [r["id"] for r in sorted(rows[:-10], key=lambda r: r["created_at"])]
    assert ids == sorted(ids)  # id order is time order
    # seeding again adds history, not duplicate tenants or users
    again = seed(ops, runs=100, tenants=3, users_per_tenant=2)
    assert again["users"] == 6 and len(ops.directory.tenants()) == 3
    v = ops.viewer(ops.directory.users()[0])
    assert v.runs().items and v.unread_count() >= 1
