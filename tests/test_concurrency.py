"""The service's guarantees under real concurrency (threads, each with its own connections), on both databases."""
import threading

from sqlalchemy import func, select

import opsux
from opsux.store.models import Notification, OperationRun

WORKERS, INCREMENTS = 8, 150


def race(n, fn):
    "Run fn(i) in n threads released at the same moment; re-raise the first error."
    barrier, errors, results = threading.Barrier(n), [], [None] * n
    def go(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as e: errors.append(e)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads: t.start()
    for t in threads: t.join(120)
    if errors: raise errors[0]
    return results


def test_concurrent_increments_lose_nothing(db_url, world):
    run = world.ops.runs.start(world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    handles = [opsux.connect(db_url, migrate=False) for _ in range(WORKERS)]  # separate engines, like separate workers
    try:
        def work(i):
            for k in range(INCREMENTS):
                if k % 10 == 9: handles[i].runs.advance(run.id, processed=1, failed=1)
                else: handles[i].runs.advance(run.id, processed=1, succeeded=1)
        race(WORKERS, work)
    finally:
        for h in handles: h.close()
    counts = world.ops.runs.get(run).summary_counts
    total = WORKERS * INCREMENTS
    assert counts == {"processed": total, "succeeded": total * 9 // 10, "failed": total // 10}


def test_racing_completes_make_one_notification(db_url, world):
    run = world.ops.runs.start(world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    world.ops.runs.advance(run, processed=1, succeeded=1)
    handles = [opsux.connect(db_url, migrate=False) for _ in range(WORKERS)]
    try:
        verbs = lambda h: [h.runs.complete, h.runs.cancel, lambda r: h.runs.fail(r, "boom")]
        results = race(WORKERS, lambda i: verbs(handles[i])[i % 3](run.id))
    finally:
        for h in handles: h.close()
    outcomes = {r.outcome for r in results}
    assert len(outcomes) == 1, outcomes  # everyone sees the one winner's outcome
    with world.ops.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(Notification).where(Notification.run_id == run.id)).scalar() == 1
    assert world.ops.viewer(world.ada).unread_count() == 1


def test_racing_enqueues_of_one_identity_make_one_run(db_url, world):
    handles = [opsux.connect(db_url, migrate=False) for _ in range(WORKERS)]
    try:
        results = race(WORKERS, lambda i: handles[i].runs.enqueue(world.contoso.id, "inventory.sync", user=world.ada.id, identity="tenant-wide"))
    finally:
        for h in handles: h.close()
    assert len({r.id for r in results}) == 1
    assert sum(not r.deduplicated for r in results) == 1
    with world.ops.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(OperationRun)).scalar() == 1
