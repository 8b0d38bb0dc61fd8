"""RQ Dashboard beside opsux: its own venv, a throwaway Redis filled through rq's API, and the dashboard server.

- `ensure_venv(dir)`: `DIR/rqdash-venv` with rq-dashboard (and `six`, which it imports without declaring it);
  made once and reused;
- `RedisServer()`: `/usr/bin/redis-server` on a free loopback port, no persistence (`--save "" --appendonly no`),
  stopped by its pid;
- `fill(url, jobs)`: `jobs` jobs, as a worker leaves them, in the finished and failed registries of a few queues
  (`Job.create`, status/started/ended, a `Result` stream entry, registry `add`, all through pipelines);
- `Dashboard(venv, redis_url)`: `rq-dashboard` bound to 127.0.0.1 on a free port, its CPU time (psutil) and
  a plain GET.

    python bench/rq_dashboard.py [--jobs 10000] [--dir /tmp/opsux-pageload]

runs a smoke check: fills a Redis, starts the dashboard, fetches a list page, its JSON and a job, stops both.
Loopback only; every process it starts is stopped by its pid.
"""
from __future__ import annotations

import argparse, http.client, json, os, random, shutil, subprocess, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import free_port  # noqa: E402  (the tests' own helper)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
QUEUES = {"default": 0.6, "emails": 0.25, "reports": 0.15}     # share of the jobs per queue
FAILED_SHARE = 0.07                                           # opsux's seed: ~5.5% failed + ~7% partial
RESULT_TTL = 30 * 86400                                       # keep results a month (the default is 500 s)
TASKS = [("app.tasks.sync_account", lambda r: (r.randrange(1, 50000),), lambda r: {"full": r.random() < 0.1}),
         ("app.tasks.send_invoice", lambda r: (f"INV-{r.randrange(10**6):06d}",), lambda r: {}),
         ("app.tasks.rebuild_report", lambda r: (r.choice(["daily", "weekly", "monthly"]), r.randrange(1, 400)),
          lambda r: {"fmt": "pdf"}),
         ("app.tasks.import_csv", lambda r: (f"s3://uploads/{r.randrange(10**5)}.csv",), lambda r: {"dry_run": False})]
ERRORS = ["ConnectionError: Error 111 connecting to billing.internal:443. Connection refused.",
          "TimeoutError: upstream did not answer within 30 s",
          "KeyError: 'customer_id'",
          "ValueError: invalid literal for int() with base 10: 'n/a'",
          "PermissionError: [Errno 13] Permission denied: '/srv/exports/report.pdf'"]


def ensure_venv(dir: Path) -> Path:
    "`dir/rqdash-venv` with rq-dashboard and six installed (made once; reused when its entry point exists)."
    venv = Path(dir) / "rqdash-venv"
    if not (venv / "bin" / "rq-dashboard").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "rq-dashboard", "six"], check=True)
    return venv


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        try:
            if pred(): return
        except OSError:
            pass
        time.sleep(0.1)                      # polling a condition with a deadline
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def _stop(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.terminate()                     # by its pid (Popen), never by name
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)


class ProcessCPU:
    "CPU time (user + system) of the server process `self.ps` (a `psutil.Process`)."
    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system


class Measured(ProcessCPU):
    "A server on 127.0.0.1:`self.port`: its CPU time and a plain GET (also opsux's side in bench/pageload.py)."
    def get(self, path: str, cookies: str = "") -> tuple[int, bytes]:
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            con.request("GET", path, headers={"Cookie": cookies} if cookies else {})
            r = con.getresponse()
            return r.status, r.read()
        finally: con.close()


class RedisServer(ProcessCPU):
    "A throwaway redis-server on a free loopback port, no persistence; `stop()` ends it."
    def __init__(self, dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = Path(dir) / f"redis-{self.port}.log"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(dir)],
                                     stdout=self._out, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        from redis import Redis
        self.client = Redis(host="127.0.0.1", port=self.port)
        try: _wait(self.client.ping, 20, "redis-server", self.proc, self.log)
        except Exception: self.stop(); raise


    def stop(self):
        try: self.client.close()
        finally:
            _stop(self.proc); self._out.close()


def _exc_string(rng: random.Random, func: str) -> str:
    mod, name = func.rsplit(".", 1)
    return ("Traceback (most recent call last):\n"
            '  File "/app/.venv/lib/python3.11/site-packages/rq/job.py", line 1474, in _execute\n'
            "    result = self.func(*self.args, **self.kwargs)\n"
            f'  File "/app/{mod.replace(".", "/")}.py", line {rng.randrange(20, 400)}, in {name}\n'
            "    return client.call(payload)\n"
            f"{rng.choice(ERRORS)}\n")


def fill(url: str, jobs: int, queues: dict[str, float] = QUEUES, failed_share: float = FAILED_SHARE,
         seed: int = 7, span_days: float = 14, chunk: int = 2000) -> dict:
    "`jobs` ended jobs in the finished and failed registries of `queues` (rq's own API; pipelined). Counts back."
    from redis import Redis
    from rq import Queue
    from rq.job import Job, JobStatus
    from rq.registry import FailedJobRegistry, FinishedJobRegistry
    from rq.results import Result
    con = Redis.from_url(url)
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    names = list(queues)
    regs = {q: (FinishedJobRegistry(q, connection=con), FailedJobRegistry(q, connection=con)) for q in names}
    pipe = con.pipeline(transaction=False)
    for q in names: pipe.sadd(Queue.redis_queues_keys, Queue.redis_queue_namespace_prefix + q)  # Queue.all()
    counts = {q: [0, 0] for q in names}
    for i in range(jobs):
        q = rng.choices(names, weights=[queues[n] for n in names])[0]
        func, args, kwargs = rng.choice(TASKS)
        ended = now - timedelta(seconds=span_days * 86400 * (1 - i / jobs))   # oldest first, ended until now
        started = ended - timedelta(seconds=rng.expovariate(1 / 4.0))
        enqueued = started - timedelta(seconds=rng.expovariate(1 / 2.0))
        job = Job.create(func, args=args(rng), kwargs=kwargs(rng), connection=con, origin=q,
                         result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL, timeout=180)
        job.created_at, job.enqueued_at, job.started_at, job.ended_at = enqueued, enqueued, started, ended
        job.worker_name = f"worker-{rng.randrange(4)}"
        ttl = max(60, int(RESULT_TTL - (now - ended).total_seconds()))     # registry score: ended + RESULT_TTL
        finished, failed = regs[q]
        if rng.random() < failed_share:
            job._status = JobStatus.FAILED
            exc = _exc_string(rng, func)
            failed.add(job, ttl=ttl, exc_string=exc, pipeline=pipe)       # saves the job, sets its expiry
            Result.create_failure(job, ttl, exc_string=exc, worker_name=job.worker_name, pipeline=pipe)
            counts[q][1] += 1
        else:
            job._status = JobStatus.FINISHED
            job._result = {"ok": True, "items": rng.randrange(1, 5000)}
            job.save(pipeline=pipe, include_meta=False, include_result=False)
            job.cleanup(ttl=ttl, pipeline=pipe)
            Result.create(job, Result.Type.SUCCESSFUL, ttl, return_value=job._result,
                          worker_name=job.worker_name, pipeline=pipe)
            finished.add(job, ttl, pipe)
            counts[q][0] += 1
        if (i + 1) % chunk == 0: pipe.execute()
    pipe.execute()
    con.close()
    return {q: {"finished": f, "failed": x} for q, (f, x) in counts.items()}


class Dashboard(Measured):
    "`rq-dashboard` from its venv on 127.0.0.1:free port against `redis_url`; CPU time, a plain GET, `stop()`."
    def __init__(self, venv: Path, redis_url: str, dir: Path, *args: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(dir) / f"rq-dashboard-{self.port}.log"
        self._out = open(self.log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RQ_DASHBOARD_", "VIRTUAL_ENV", "PYTHON"))}
        self.proc = subprocess.Popen([str(Path(venv) / "bin" / "rq-dashboard"), "--bind", "127.0.0.1",
                                      "--port", str(self.port), "--redis-url", redis_url, *args],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=str(dir))
        self.ps = psutil.Process(self.proc.pid)
        try: _wait(lambda: self.get("/")[0] == 200, 60, "rq-dashboard", self.proc, self.log)
        except Exception: self.stop(); raise


    def stop(self):
        _stop(self.proc); self._out.close()


def jobs_path(queue: str, registry: str, per_page: int = 25, order: str = "dsc", page: int = 1) -> str:
    "The dashboard's jobs page of `queue`'s `registry` (its default link is 8 per page, ascending)."
    return f"/0/view/jobs/{queue}/{registry}/{per_page}/{order}/{page}"


def jobs_json_path(queue: str, registry: str, per_page: int = 25, order: str = "dsc", page: int = 1) -> str:
    "The JSON the jobs page polls for its rows."
    return f"/0/data/jobs/{queue}/{registry}/{per_page}/{order}/{page}.json"


def job_path(job_id: str) -> str: return f"/0/view/job/{job_id}"


def job_json_path(job_id: str) -> str: return f"/0/data/job/{job_id}.json"


class Side:
    "Redis filled with `jobs` jobs plus the dashboard on it, as one unit for the page-load benchmark."
    def __init__(self, dir: Path, jobs: int, quiet: bool = False):
        dir = Path(dir); dir.mkdir(parents=True, exist_ok=True)
        self.venv = ensure_venv(dir)
        self.redis = RedisServer(dir)
        try:
            t0 = time.perf_counter()
            self.counts = fill(self.redis.url, jobs)
            if not quiet: print(f"filled Redis with {jobs:,} rq jobs in {time.perf_counter() - t0:.0f} s", flush=True)
            self.dash = Dashboard(self.venv, self.redis.url, dir)
        except Exception:
            self.redis.stop(); raise
        self.base, self.ps = self.dash.base, self.dash.ps
        self.queue = max(self.counts, key=lambda q: self.counts[q]["finished"])

    def cpu(self) -> float: return self.dash.cpu() + self.redis.cpu()   # the store is part of the server
    def dash_cpu(self) -> float: return self.dash.cpu()
    def get(self, path: str, cookies: str = "") -> tuple[int, bytes]: return self.dash.get(path, cookies)
    def rss_mb(self) -> tuple[float, float]:
        return self.dash.ps.memory_info().rss / 2**20, self.redis.ps.memory_info().rss / 2**20

    def first_job_id(self, registry: str = "finished") -> str:
        status, body = self.get(jobs_json_path(self.queue, registry))
        assert status == 200, status
        return json.loads(body)["jobs"][0]["id"]

    def stop(self):
        try: self.dash.stop()
        finally: self.redis.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--dir", default="/tmp/opsux-pageload")
    a = ap.parse_args()
    side = Side(Path(a.dir), a.jobs)
    try:
        print("jobs per queue:", side.counts)
        for path in (jobs_path(side.queue, "finished"), jobs_json_path(side.queue, "finished"),
                     jobs_json_path(side.queue, "failed")):
            t0, c0 = time.perf_counter(), side.cpu()
            status, body = side.get(path)
            print(f"GET {path}: {status}, {len(body):,} bytes, {time.perf_counter() - t0:.3f} s, "
                  f"server+redis CPU {side.cpu() - c0:.3f} s")
            assert status == 200
        job_id = side.first_job_id("failed")
        status, body = side.get(job_json_path(job_id))
        info = json.loads(body)
        print(f"job {job_id}: {info['status']}, {info['description'][:60]}, exc {info['exc_info'].splitlines()[-1]!r}")
        assert info["status"] == "failed" and info["exc_info"]
        print("RSS MB (dashboard, redis): %.0f, %.0f" % side.rss_mb())
    finally:
        side.stop()


if __name__ == "__main__":
    main()
