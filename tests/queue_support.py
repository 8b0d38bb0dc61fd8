"""Real parts for the queue tests: a redis-server, worker processes, the job body of every scenario, and what each
scenario must leave on its run. The task modules (queue_rq_tasks.py, queue_celery_tasks.py) import `body` from here;
the tests import the rest."""
import os, re, shutil, signal, subprocess, sys, time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from support import free_port, wait_until

HERE = Path(__file__).resolve().parent
ITEMS = 200
IN_FLIGHT_FROM = 20  # in-flight scenarios slow down from this item on, so a test can kill or cancel them mid-run
SLOW = 0.05  # seconds per slowed item


def body(r, kind: str, pid_dir: str | None = None) -> int:
    "The job of every scenario: 200 items through `r.iter`, failing, raising, dying or lingering as `kind` says."
    attempt = r.run.attempt or 1
    if pid_dir: Path(pid_dir, f"{r.id}.pid").write_text(str(os.getpid()))
    for i in r.iter(range(ITEMS)):
        if kind == "partial" and i % 10 == 0: r.fail_item(i, "device refused the change", code="device.refused")
        elif kind == "all_failing": r.fail_item(i, "device unreachable", code="device.unreachable")
        elif kind == "raising" and i == 120: raise RuntimeError("inventory API answered 500")
        elif kind == "retried" and attempt == 1 and i == 100: raise RuntimeError("inventory API reset the connection")
        elif kind == "redelivered" and attempt == 1 and i == 60: os.kill(os.getpid(), signal.SIGKILL)
        elif kind in ("sigkill", "cancel_running", "timeout") and i >= IN_FLIGHT_FROM: time.sleep(SLOW)
    return ITEMS


# the 20 jobs: name → kind (the double click is one run queued twice)
SCENARIOS = {**{f"ok-{i}": "ok" for i in range(1, 10)}, "double-click": "ok", "partial-1": "partial",
             "partial-2": "partial", "all-failing": "all_failing", "raising": "raising", "sigkill": "sigkill",
             "timeout": "timeout", "retried": "retried", "redelivered": "redelivered",
             "cancel-running": "cancel_running", "cancel-queued": "cancel_queued"}
assert len(SCENARIOS) == 20
KILLS = ("sigkill", "redelivered")  # scenarios whose worker process dies (not for a worker without a work horse)
JOB_TIMEOUT = 4  # seconds, the budget of the "timeout" job (a forking rq worker imports the tasks within it)
FORBIDDEN = ("DuplicatePreparedStatement", "NoSuchColumnError", "ResourceClosedError", "InterfaceError",
             "lost by", "prepared statement", "OperationalError")


def codes(failures) -> list:
    return [f.get("code") for f in failures or []]


def expected(kind: str) -> dict:
    "What a run of `kind` must end with: outcome, counts, attempt and failure codes (None: not checked exactly)."
    full = {"total": ITEMS, "processed": ITEMS, "succeeded": ITEMS}
    return {
        "ok": dict(outcome="succeeded", counts=full, attempt=1, codes=[]),
        "partial": dict(outcome="partially_succeeded", attempt=1, codes=["device.refused"] * 20,
                        counts={"total": ITEMS, "processed": ITEMS, "succeeded": 180, "failed": 20}),
        "all_failing": dict(outcome="failed", attempt=1, codes=["device.unreachable"] * 50,
                            counts={"total": ITEMS, "processed": ITEMS, "failed": ITEMS}),
        "raising": dict(outcome="failed", attempt=1, codes=["exception"],
                        counts={"total": ITEMS, "processed": 120, "succeeded": 120}),
        "sigkill": dict(outcome="failed", attempt=1, codes=["worker.lost"], counts=None),
        "timeout": dict(outcome="failed", attempt=1, codes=["job.timeout"], counts=None),
        "retried": dict(outcome="succeeded", counts=full, attempt=2, codes=[]),
        "redelivered": dict(outcome="succeeded", counts=full, attempt=2, codes=[]),
        "cancel_running": dict(outcome="cancelled", attempt=1, codes=[], counts=None),
        "cancel_queued": dict(outcome="cancelled", attempt=1, codes=[], counts={}),
    }[kind]


def check_run(run, kind: str, notes: int) -> list[str]:
    "Everything that is wrong with `run` for a scenario of `kind` (empty when it is right)."
    want, bad = expected(kind), []
    got = dict(status=run.status, outcome=run.outcome, attempt=run.attempt or 1, codes=codes(run.failure_summary))
    for k in ("outcome", "attempt", "codes"):
        if got[k] != want[k]: bad.append(f"{k} {got[k]!r} != {want[k]!r}")
    if run.status != "completed": bad.append(f"status {run.status}")
    if notes != 1: bad.append(f"{notes} notifications")
    c = run.summary_counts or {}
    if want["counts"] is not None and c != want["counts"]: bad.append(f"counts {c} != {want['counts']}")
    if kind == "timeout" and c.get("processed", 0) >= ITEMS: bad.append("the timed-out job processed every item")
    if kind in ("sigkill", "cancel_running") and not IN_FLIGHT_FROM <= c.get("processed", 0) < ITEMS:
        bad.append(f"processed {c.get('processed')} is not between {IN_FLIGHT_FROM} and {ITEMS - 1}")
    if kind == "cancel_queued" and (run.started_at is not None or run.attempts): bad.append("a cancelled run was worked")
    earlier = run.attempts or []
    if kind == "retried" and [(a["outcome"], a["summary_counts"].get("processed")) for a in earlier] != [("failed", 100)]:
        bad.append(f"attempts {earlier}")
    if kind == "redelivered":
        if [a["outcome"] for a in earlier] != ["failed"] or "worker.lost" not in codes(earlier[0]["failure_summary"]):
            bad.append(f"attempts {earlier}")
        elif earlier[0]["summary_counts"].get("processed", 0) > 60: bad.append(f"attempt 1 counted {earlier}")
    lost = "worker.lost" in got["codes"] + [c for a in earlier for c in codes(a["failure_summary"])]
    if lost and kind not in KILLS: bad.append("a run that no worker death touched says worker.lost")
    return bad


def notification_counts(ops, user) -> Counter:
    return Counter(n.run_id for n in ops.viewer(user).notifications(limit=500))


def figure(run, kind: str) -> str:
    "One line of the after figures for a run."
    c = run.summary_counts or {}
    last = (run.failure_summary or [{}])[-1] if run.failure_summary else {}
    took = (run.completed_at - run.started_at).total_seconds() if run.started_at and run.completed_at else None
    return (f"{kind:15} {run.outcome:20} attempt {run.attempt or 1} processed {c.get('processed', 0):>3}/{ITEMS} "
            f"failed {c.get('failed', 0):>3} code {last.get('code')} "
            + (f"ran {took:.1f}s" if took is not None else "never started"))


def scan_logs(text: str) -> list[str]:
    "Lines of worker logs that show a broken connection or a false crash message."
    return [line for line in text.splitlines() if any(f in line for f in FORBIDDEN)
            or re.search(r"opsux: .* failed \(.*\); retry", line)]


@dataclass
class Proc:
    "A process the test started, logging to a file; stopped by its pid."
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, args, log: Path, env=None, cwd=None) -> "Proc":
        f = open(log, "ab")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        f.close()
        return cls(p, log)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try: self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def text(self) -> str: return self.log.read_text(errors="replace")


class RedisServer:
    "A redis-server on a free loopback port, without persistence (`--save \"\"`), stopped by its pid."
    def __init__(self, workdir: Path):
        if shutil.which("redis-server") is None:  # tests/run.sh installs it; CI must not skip the queue tests
            import pytest
            msg = "redis-server is not installed (apt-get install redis-server): queue tests NOT RUN"
            if os.environ.get("CI"): pytest.fail(msg)
            pytest.skip(msg)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.p = Proc.start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], workdir / "redis.log")
        from redis import Redis
        self.client = Redis(port=self.port)
        def up():
            assert self.p.proc.poll() is None, self.p.text()
            try: return self.client.ping()
            except Exception: return False
        wait_until(up, timeout=20)

    def stop(self): self.p.stop()


def worker_env(db_url: str, redis_url: str, queue: str) -> dict:
    "The environment of worker processes and of the task modules."
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, OPSUX_QUEUE_DB=db_url, OPSUX_QUEUE_REDIS=redis_url, OPSUX_QUEUE_NAME=queue,
                PYTHONPATH=path, PYTHONUNBUFFERED="1")


def fresh_import(name: str, env: dict):
    "Import task module `name` anew with `env` (each test has its own database and queue)."
    import importlib
    for k in ("OPSUX_QUEUE_DB", "OPSUX_QUEUE_REDIS", "OPSUX_QUEUE_NAME"): os.environ[k] = env[k]
    if str(HERE) not in sys.path: sys.path.insert(0, str(HERE))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def drive(ops, runs: dict, pid_dir: Path, workers, job_ended, timeout: float = 150) -> float:
    """Kill and cancel the in-flight scenarios once they are under way; return the seconds until every run has ended
    and so has its queue job (`job_ended(run)`: a failed attempt that the queue retries is not the end)."""
    t0, pending, acted = time.monotonic(), dict(runs), set()
    def done():
        for w in workers: assert w.proc.poll() is None, f"a worker exited:\n{w.text()[-3000:]}"
        for name, run in list(pending.items()):
            r = ops.runs.get(run)
            processed = (r.summary_counts or {}).get("processed", 0)
            if name in ("sigkill", "cancel-running") and name not in acted and processed >= IN_FLIGHT_FROM:
                if name == "sigkill": os.kill(int((pid_dir / f"{r.id}.pid").read_text()), signal.SIGKILL)
                else: ops.runs.request_cancel(r)
                acted.add(name)
            if r.status == "completed" and job_ended(r): del pending[name]
        return not pending
    wait_until(done, timeout=timeout, interval=0.2)
    return time.monotonic() - t0
