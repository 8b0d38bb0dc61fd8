"""opsux.rq with real parts: a redis-server, real `rq worker` processes (forking, a preloading worker script and
rq's SimpleWorker) on SQLite and PostgreSQL, 20 jobs × 200 items each: succeeding, partial, all-failing, raising,
SIGKILLed, timed-out, retried, redelivered (work horse killed, then retried), cancelled while running, cancelled
before pickup, and a double click. Every run must end exactly as its scenario says, with one notification, the right
failure codes, and worker logs free of broken-connection or false crash messages."""
import sys, time

import pytest

pytest.importorskip("rq")
from rq.job import Job, Retry  # noqa: E402

import opsux  # noqa: E402
from opsux.rq import SETTLE_SUFFIX  # noqa: E402
from queue_support import (JOB_TIMEOUT, KILLS, SCENARIOS, Proc, RedisServer, check_run, drive, figure,  # noqa: E402
                           fresh_import, notification_counts, scan_logs, worker_env, HERE)

WORKERS = {"fork": 2, "preload": 2, "simple": 1}  # model → worker processes


def worker_command(model: str, redis_url: str, queue: str) -> list[str]:
    "A plain forking `rq worker`, the preloading worker script, or the script running rq's SimpleWorker."
    if model == "fork": return [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, queue]
    return [sys.executable, str(HERE / "queue_rq_preload.py"), *(["simple"] if model == "simple" else [])]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def job_options(kind: str) -> dict:
    if kind in ("retried", "redelivered"): return {"retry": Retry(max=1)}
    if kind == "timeout": return {"job_timeout": JOB_TIMEOUT}
    return {}


def run_scenarios(model: str, db_url: str, redis: RedisServer, tmp_path):
    "Queue the 20 jobs, run them on real workers of `model`, and return (ops, user, runs, workers, seconds)."
    redis.client.flushall()
    queue = f"opsux-{model}"
    env = worker_env(db_url, redis.url, queue)
    ops = opsux.connect(db_url)
    tenant = ops.directory.add_tenant("Contoso")
    ada = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[tenant])
    tasks = fresh_import("queue_rq_tasks", env)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    scenarios = {n: k for n, k in SCENARIOS.items() if model != "simple" or k not in KILLS}
    runs = {}
    for name, kind in scenarios.items():
        run = tasks.work.enqueue(tenant, kind, str(pid_dir), user=ada, identity=name, job_options=job_options(kind))
        runs[name] = run
        if name == "double-click":
            again = tasks.work.enqueue(tenant, kind, str(pid_dir), user=ada, identity=name)
            assert (again.id, again.deduplicated, again.job_id) == (run.id, True, run.job_id)
        if kind == "cancel_queued": ops.runs.request_cancel(run)
    cmd = worker_command(model, redis.url, queue)
    workers = [Proc.start(cmd, tmp_path / f"worker-{i}.log", env=env, cwd=str(tmp_path)) for i in range(WORKERS[model])]
    ended = lambda r: Job.fetch(r.job_id, connection=redis.client).get_status() in ("finished", "failed", "canceled")
    try: seconds = drive(ops, runs, pid_dir, workers, ended)
    finally:
        for w in workers: w.stop()
    tasks.ops.close()
    return ops, ada, runs, scenarios, workers, seconds


@pytest.mark.parametrize("model", ["fork", "preload"])
def test_rq_workers_end_every_run_exactly(model, db_url, redis, tmp_path):
    ops, ada, runs, scenarios, workers, seconds = run_scenarios(model, db_url, redis, tmp_path)
    notes = notification_counts(ops, ada)
    final = {name: ops.runs.get(run) for name, run in runs.items()}
    problems = {name: p for name, r in final.items() if (p := check_run(r, scenarios[name], notes[r.id]))}
    print(f"\nrq {model} on {ops.dialect}: {len(final) - len(problems)} of {len(final)} runs right in {seconds:.1f}s")
    for name, r in final.items(): print("  ", figure(r, scenarios[name]))
    assert not problems, problems
    # one job per run (the double click queued one), found by its id
    keys = [k.decode() for k in redis.client.scan_iter("rq:job:*") if k.count(b":") == 2]
    assert len([k for k in keys if not k.endswith(SETTLE_SUFFIX)]) == len(runs)
    assert all(ops.runs.get_by_job(r.job_id).id == r.id for r in final.values())
    # the settle job ran (and was discarded: result_ttl=0) only for the run whose work horse died, no retry left;
    # every other run's job cancelled its settle job itself
    settled = [n for n, r in final.items() if not Job.exists(r.job_id + SETTLE_SUFFIX, connection=redis.client)]
    assert settled == ["sigkill"], settled
    logs = "\n".join(w.text() for w in workers)
    assert not scan_logs(logs), scan_logs(logs)
    assert logs.count("Work-horse terminated unexpectedly") == len(KILLS), logs[-5000:]
    ops.close()


def test_rq_simple_worker(db_url, redis, tmp_path):
    "rq's SimpleWorker runs every job in the worker process itself (no fork): same results (no kills: they end it)."
    ops, ada, runs, scenarios, workers, seconds = run_scenarios("simple", db_url, redis, tmp_path)
    notes = notification_counts(ops, ada)
    final = {name: ops.runs.get(run) for name, run in runs.items()}
    problems = {name: p for name, r in final.items() if (p := check_run(r, scenarios[name], notes[r.id]))}
    print(f"\nrq simple on {ops.dialect}: {len(final) - len(problems)} of {len(final)} runs right in {seconds:.1f}s")
    assert not problems, problems
    assert not scan_logs(workers[0].text())
    ops.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # an alarm inside a GC callback
def test_a_job_timeout_inside_a_write_leaves_the_database_usable(db_url):
    """RQ's job timeout is a SIGALRM that raises `JobTimeoutException` wherever the horse is, often inside an opsux
    write. After each interruption the run must still be failed at once with code job.timeout (on SQLite an
    interrupted write used to keep the file's write lock: every later write got "database is locked")."""
    import signal
    from rq.timeouts import JobTimeoutException
    from opsux.rq import _code
    ops = opsux.connect(db_url, retry_seconds=3)
    tenant = ops.directory.add_tenant("Contoso")
    fired = []
    def alarm(*_):
        fired.append(1)
        raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")
    old = signal.signal(signal.SIGALRM, alarm)
    try:
        for n in range(120 if db_url.startswith("sqlite") else 40):  # SQLite kept its lock within ~5 before
            run = ops.runs.start(ops.runs.enqueue(tenant, "inventory.sync"))
            fired.clear()
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.001 + (n % 9) * 0.0005)
                while not fired: ops.runs.advance(run, processed=1, succeeded=1)
            except Exception as e:
                assert _code(e) == "job.timeout", repr(e)
            finally: signal.setitimer(signal.ITIMER_REAL, 0)
            done = ops.runs.fail(run, "timed out", code="job.timeout")
            assert (done.status, done.outcome) == ("completed", "failed")
    finally:
        signal.signal(signal.SIGALRM, old)
        ops.close()
