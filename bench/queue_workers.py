"""What a job costs in each worker model (issue 15, queue part), on SQLite and on a private durable PostgreSQL.

    flock /tmp/opsux-bench.lock python bench/queue_workers.py [--jobs 20]

Queues `--jobs` succeeding jobs of 200 items each (the queue tests' job body) through `opsux.rq` /
`opsux.celery` and runs them on real workers: a plain forking `rq worker` ×2 (imports the tasks module in every
work horse), the same with `-c tasks` (rq imports its settings module in the parent: the tasks are preloaded
with no code), the preloading worker script ×2, rq's SimpleWorker ×1, and a prefork `celery worker` with 2
processes. Prints, per model and database, the wall time from starting the workers to the last run's end, jobs per
second, and the median time per job that the worker logs (the issue's "before": a plain `rq worker` job paid
3.5–5.2 s). Every run must end succeeded with all items counted, or the benchmark stops.
"""
from __future__ import annotations

import argparse, re, statistics, sys, tempfile, time, uuid
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

import opsux  # noqa: E402
import pgserver  # noqa: E402
import queue_support as qs  # noqa: E402

MODELS = {  # name → (command builder, worker processes, tasks module)
    "rq fork": (lambda url, q: [sys.executable, "-m", "rq.cli", "worker", "--url", url, q], 2, "queue_rq_tasks"),
    "rq fork -c tasks": (lambda url, q: [sys.executable, "-m", "rq.cli", "worker", "-c", "queue_rq_tasks", "--url", url,
                                         q], 2, "queue_rq_tasks"),  # the settings module is imported in the parent
    "rq preload": (lambda url, q: [sys.executable, str(HERE / "tests/queue_rq_preload.py")], 2, "queue_rq_tasks"),
    "rq simple": (lambda url, q: [sys.executable, str(HERE / "tests/queue_rq_preload.py"), "simple"], 1,
                  "queue_rq_tasks"),
    "celery prefork": (lambda url, q: [sys.executable, "-m", "celery", "-A", "queue_celery_tasks", "worker",
                                       "--pool", "prefork", "--concurrency", "2", "--prefetch-multiplier", "1",
                                       "-Q", q, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                                       "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"], 1,
                       "queue_celery_tasks"),
}
PER_JOB = {"rq": r"job in (\d+):(\d+):([\d.]+)s", "celery": r"succeeded in ([\d.]+)s"}


def per_job(logs: str, model: str) -> float | None:
    "Median seconds per job as the worker logged them."
    if model.startswith("rq"):
        xs = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in re.findall(PER_JOB["rq"], logs)]
    else: xs = [float(s) for s in re.findall(PER_JOB["celery"], logs)]
    return statistics.median(xs) if xs else None


def measure(model: str, db_url: str, redis: qs.RedisServer, jobs: int) -> dict:
    build, n, module = MODELS[model]
    redis.client.flushall()
    queue = f"bench-{model.replace(' ', '-')}"
    env = qs.worker_env(db_url, redis.url, queue)
    ops = opsux.connect(db_url)
    tenant = ops.directory.add_tenant("Bench")
    tasks = qs.fresh_import(module, env)
    # `kind` as a keyword: the catalog guard reads the second positional of any .enqueue(…) as an operation type
    runs = {f"job-{i}": tasks.work.enqueue(tenant, kind="ok") for i in range(jobs)}
    tmp = Path(tempfile.mkdtemp(prefix="opsux-bench-workers-"))
    workers = [qs.Proc.start(build(redis.url, queue), tmp / f"w{i}.log", env=env, cwd=str(tmp)) for i in range(n)]
    t0 = time.monotonic()
    try:
        qs.wait_until(lambda: all(ops.runs.get(r).status == "completed" for r in runs.values()), timeout=600,
                      interval=0.1)
        wall = time.monotonic() - t0
    finally:
        for w in workers: w.stop()
    final = [ops.runs.get(r) for r in runs.values()]
    bad = [r for r in final if r.outcome != "succeeded" or (r.summary_counts or {}).get("processed") != qs.ITEMS]
    assert not bad, bad
    logs = "\n".join(w.text() for w in workers)
    tasks.ops.close()
    ops.close()
    return {"wall": wall, "jobs_per_s": jobs / wall, "per_job": per_job(logs, model)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    args = ap.parse_args()
    redis = qs.RedisServer(Path(tempfile.mkdtemp(prefix="opsux-bench-redis-")))
    admin = pgserver.start_postgres(durable=True)
    try:
        print(f"{args.jobs} jobs × {qs.ITEMS} items each")
        print(f"{'model':18} {'database':11} {'wall s':>7} {'jobs/s':>7} {'s per job (median, worker log)':>32}")
        for model in MODELS:
            for kind in ("sqlite", "postgresql"):
                url = (f"sqlite:///{tempfile.mkdtemp(prefix='opsux-bench-')}/q.sqlite" if kind == "sqlite"
                       else pgserver.fresh_database(admin))
                m = measure(model, url, redis, args.jobs)
                pj = f"{m['per_job']:.2f}" if m["per_job"] is not None else "-"
                print(f"{model:18} {kind:11} {m['wall']:7.1f} {m['jobs_per_s']:7.2f} {pj:>32}", flush=True)
    finally: redis.stop()


if __name__ == "__main__":
    main()
