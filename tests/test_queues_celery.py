"""opsux.celery with real parts: a redis-server as broker and result backend, a real `celery worker` (prefork pool,
2 processes) whose tasks module connects at import as the README says (`ops = opsux.connect()` in the parent, before
the fork), on SQLite and PostgreSQL: 20 tasks × 200 items each — succeeding, partial, all-failing, raising, a pool
child SIGKILLed (WorkerLostError), a hard time limit, an autoretried task, a redelivered one (acks_late and
reject_on_worker_lost: its child dies, the message comes back), cancelled while running, cancelled before pickup, and
a double click. Every run must end exactly as its scenario says, with one notification, the right failure codes, and
worker logs free of broken-connection or false crash messages."""
import sys, uuid

import pytest

pytest.importorskip("celery")
from celery import states  # noqa: E402

import opsux  # noqa: E402
from queue_support import (JOB_TIMEOUT, KILLS, SCENARIOS, Proc, RedisServer, check_run, drive, figure,  # noqa: E402
                           fresh_import, notification_counts, scan_logs, worker_env)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def task_for(tasks, kind: str):
    "The task of a scenario: its Celery options (retries, redelivery, time limit) are the task's own."
    return {"retried": tasks.work_retried, "redelivered": tasks.work_redelivered, "timeout": tasks.work_timed}.get(
        kind, tasks.work)


def test_celery_prefork_ends_every_run_exactly(db_url, redis, tmp_path):
    redis.client.flushall()
    queue = "opsux-celery"
    env = worker_env(db_url, redis.url, queue)
    ops = opsux.connect(db_url)
    tenant = ops.directory.add_tenant("Contoso")
    ada = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[tenant])
    tasks = fresh_import("queue_celery_tasks", env)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    runs = {}
    for name, kind in SCENARIOS.items():
        task = task_for(tasks, kind)
        runs[name] = run = task.enqueue(tenant, kind, str(pid_dir), user=ada, identity=name)
        if name == "double-click":
            again = task.enqueue(tenant, kind, str(pid_dir), user=ada, identity=name)
            assert (again.id, again.deduplicated, again.job_id) == (run.id, True, run.job_id)
        if kind == "cancel_queued": ops.runs.request_cancel(run)
    worker = Proc.start([sys.executable, "-m", "celery", "-A", "queue_celery_tasks", "worker", "--pool", "prefork",
                         "--concurrency", "2", "--prefetch-multiplier", "1", "--loglevel", "INFO", "-Q", queue,
                         "--without-gossip", "--without-mingle", "--without-heartbeat",
                         "-n", f"opsux-{uuid.uuid4().hex[:8]}@%h"], tmp_path / "worker.log", env=env, cwd=str(tmp_path))
    ended = lambda r: tasks.app.AsyncResult(r.job_id).state in states.READY_STATES
    try: seconds = drive(ops, runs, pid_dir, [worker], ended)
    finally: worker.stop()
    notes = notification_counts(ops, ada)
    final = {name: ops.runs.get(run) for name, run in runs.items()}
    problems = {name: p for name, r in final.items() if (p := check_run(r, SCENARIOS[name], notes[r.id]))}
    print(f"\ncelery prefork on {ops.dialect}: {len(final) - len(problems)} of {len(final)} runs right in {seconds:.1f}s")
    for name, r in final.items(): print("  ", figure(r, SCENARIOS[name]))
    assert not problems, problems
    # one task per run (the double click queued one), found by its id
    assert len(list(redis.client.scan_iter("celery-task-meta-*"))) == len(runs)
    assert all(ops.runs.get_by_job(r.job_id).id == r.id for r in final.values())
    logs = worker.text()
    assert not scan_logs(logs), scan_logs(logs)
    assert logs.count("WorkerLostError") >= len(KILLS), logs[-5000:]
    assert f"Hard time limit ({JOB_TIMEOUT}s) exceeded" in logs, logs[-5000:]
    tasks.ops.close()
    ops.close()
