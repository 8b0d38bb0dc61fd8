"""Load benchmark of `opsux serve` on PostgreSQL: many dashboard sessions, 20 workers, 1M runs of history.

One dashboard server runs in a subprocess (`serve(..., num_procs=1)`, acting as one operator), wrapped so that it
counts every SQL statement it sends (a SQLAlchemy `before_cursor_execute` listener on all engines; the watcher's
own LISTEN connection is plain psycopg and adds one `SELECT 1` per second on top). Sessions are real Bokeh/Panel
sessions opened the way a browser opens them: GET /operations (the first view), then the Bokeh websocket with
the page's token (the server builds the page when it comes), PULL-DOC, the `document_ready` event BokehJS sends
once it rendered the page, and from then on every PATCH-DOC the server pushes. A separate process runs 20 worker
threads that enqueue, advance and complete runs in the operator's tenant (a third of them as the operator, so the
progress widget changes too).
Another process times the list page while all this runs.

Phases: 0 sessions (baseline), then 1, 50 and 200 open sessions. Per phase it reports
- dashboard SQL statements/s (from the server) and database transactions/s (pg_stat_database, workers included);
- server CPU% and RSS (psutil), and RSS per session;
- push latency from a commit (taken right after `advance` returned) to the moment each session receives the
  patch showing the new percent of a probe run in its progress widget (p50/p95/max over sessions x samples);
- the server's garbage-collection pauses (a `gc.callbacks` hook): how many of 10 ms or more, how many full, the
  longest — nothing else runs in the process meanwhile, so a long one delays every session;
- list-page time: `viewer.runs(limit=25)` for the operator (first page, filtered, a deep keyset page) and an HTTP
  GET of /operations (the first view: user, tenants and list rows; the page is built when its websocket comes),
  both under the load.

    python bench/serve.py [--db URL] [--runs 1000000] [--sessions 1,50,200] [--workers 20] [--phase-seconds 40]

Without --db it starts a private PostgreSQL (fsync on) and seeds it; with --db it seeds only when the database
holds fewer runs than --runs, so a seeded database is reused. Loopback only; stops itself (a hard limit of
--max-minutes, default 15).
"""
from __future__ import annotations

import argparse, asyncio, html, json, os, random, re, statistics, subprocess, sys, tempfile, textwrap, threading, time
import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from browser_support import free_port, wait_ready  # noqa: E402  (the tests' own helpers)

# A browser's BokehJS sends this once the document is rendered; until then Panel treats the session as still
# loading and defers every update to a callback of its own (one message per change instead of one per round).
DOCUMENT_READY = {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event",
                              "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}}}]}
TOKEN = re.compile(r'"token":"([^"]+)"')
def _widget_row(q: str, gt: str):
    "A progress-widget row's run id and percent, with quotes/`>` written as `q`/`gt` (never crossing into another row)."
    return re.compile(rf'class={q}ox-row{q} data-run-id={q}(\d+){q}(?:(?!ox-row).)*?class={q}ox-percent{q}{gt}(\d+)%', re.S)
WIDGET_ROW_SENT = _widget_row("&quot;", "&gt;")    # HTML panes send their markup escaped: found without decoding
WIDGET_ROW = _widget_row('"', ">")


# ---------------------------------------------------------------------------------------------------------------
# Sessions: real Bokeh server sessions driven over the websocket, many per asyncio loop
# ---------------------------------------------------------------------------------------------------------------
class Session:
    "One dashboard session: the page's server-side document plus its websocket; notes when each watched percent shows."
    def __init__(self, swarm: "SessionSwarm", n: int):
        self.swarm, self.n = swarm, n
        self.ws, self.local_port, self.session_id, self.patches, self.closed = None, None, None, 0, False
        self.seen: dict[tuple[int, int], float] = {}           # (run id, percent) -> wall clock when it arrived

    async def open(self, base: str, path: str, cookies: str | None = None, origin: str | None = None):
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        from tornado.websocket import websocket_connect
        headers = {"Cookie": cookies} if cookies else {}
        t0 = time.perf_counter()
        r = await AsyncHTTPClient().fetch(HTTPRequest(base + path, headers=headers, request_timeout=120))
        self.page_seconds = time.perf_counter() - t0
        token = TOKEN.search(r.body.decode()).group(1)
        ws_url = base.replace("http://", "ws://", 1) + path + "/ws"
        req = HTTPRequest(ws_url, headers={**headers, "Origin": origin or base}, request_timeout=60)
        self.ws = await websocket_connect(req, subprotocols=["bokeh", token], max_message_size=64 * 2**20)
        self.local_port = self.ws.stream.socket.getsockname()[1]
        header = await self._read_message()                     # the server greets with ACK
        assert header["msgtype"] == "ACK", header
        await self._send("PULL-DOC-REQ")
        while True:
            header = await self._read_message()
            if header["msgtype"] == "PULL-DOC-REPLY": break
        await self._send("PATCH-DOC", DOCUMENT_READY)   # what BokehJS sends once the page is rendered
        self.opened_seconds = time.perf_counter() - t0
        asyncio.get_running_loop().create_task(self._pump())
        return self

    async def _send(self, msgtype: str, content: dict | None = None):
        await self.ws.write_message(json.dumps({"msgid": f"{self.n}-{time.monotonic_ns()}", "msgtype": msgtype}))
        await self.ws.write_message("{}"); await self.ws.write_message(json.dumps(content or {}))

    async def _read_message(self):
        "Read one Bokeh message (header, metadata, content, buffers); returns the header, keeps the content."
        frames = []
        for _ in range(3):
            f = await self.ws.read_message()
            if f is None: raise ConnectionError("websocket closed")
            frames.append(f)
        header = json.loads(frames[0])
        for _ in range(2 * int(header.get("num_buffers") or 0)): await self.ws.read_message()
        self.content = frames[2]
        return header

    async def _pump(self):
        try:
            while True:
                header = await self._read_message()
                if header["msgtype"] == "PATCH-DOC":
                    self.patches += 1
                    self._scan(self.content)
        except Exception:
            self.closed = True

    def _scan(self, content):
        if isinstance(content, bytes): content = content.decode("utf-8", "replace")
        if not self.swarm.watched or "ox-percent" not in content: return
        now = time.time()
        found = WIDGET_ROW_SENT.findall(content)     # cheap: 200 sessions in one client process must keep up
        if not found:
            found = WIDGET_ROW.findall("\n".join(html.unescape(x) for x in _strings(json.loads(content)) if "ox-percent" in x))
        for run_id, percent in found:
            key = (int(run_id), int(percent))
            if key[0] in self.swarm.watched and key not in self.seen: self.seen[key] = now

    def close(self):
        if self.ws is not None: self.ws.close()


def _strings(value):
    "Every string inside a decoded JSON value."
    if isinstance(value, str): yield value
    elif isinstance(value, dict):
        for v in value.values(): yield from _strings(v)
    elif isinstance(value, list):
        for v in value: yield from _strings(v)


class SessionSwarm:
    "Many `Session`s on one asyncio loop in a background thread."
    def __init__(self):
        self.sessions: list[Session] = []
        self.watched: set[int] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="session-swarm", daemon=True)
        self.thread.start()

    def _run(self, coro, timeout=None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, base: str, n: int, path: str = "/operations", concurrency: int = 4, cookies: str | None = None,
             timeout: float = 600, origin: str | None = None) -> list[Session]:
        "Open `n` more sessions on `base` (at most `concurrency` page builds at a time); returns them."
        async def go():
            sem = asyncio.Semaphore(concurrency)
            async def one(i):
                async with sem:
                    s = await Session(self, i).open(base, path, cookies, origin)
                    self.sessions.append(s)       # visible at once: a timed-out open keeps what it got
                    return s
            start = len(self.sessions)
            return await asyncio.gather(*(one(start + i) for i in range(n)))
        fut = asyncio.run_coroutine_threadsafe(go(), self.loop)
        try: return fut.result(timeout)
        except BaseException:
            fut.cancel(); raise

    def wait_seen(self, run_id: int, percent: int, sessions=None, timeout: float = 15.0) -> list[float | None]:
        "Wait until every session (of `sessions`) showed `percent` for `run_id`; their arrival times (None: missed)."
        sessions = self.sessions if sessions is None else sessions
        key, deadline = (run_id, percent), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(key in s.seen or s.closed for s in sessions): break
            time.sleep(0.005)  # polling a condition with a deadline
        return [s.seen.get(key) for s in sessions]

    def close(self):
        for s in self.sessions: self.loop.call_soon_threadsafe(s.close)
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------------------------
# The server under test, wrapped to count its SQL statements and time its garbage collections
# ---------------------------------------------------------------------------------------------------------------
SERVER_CODE = """
import collections, gc, json, os, sys, threading, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
url, port, user, stats, num_procs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
counts, lock = {"statements": 0}, threading.Lock()
@event.listens_for(Engine, "before_cursor_execute")
def _count(*args):
    with lock: counts["statements"] += 1
pauses, started = collections.deque(maxlen=500), [0.0]   # garbage collections of 10 ms or more: (end, generation, s)
def _gc(phase, info):
    if phase == "start": started[0] = time.perf_counter(); return
    took = time.perf_counter() - started[0]
    if took >= 0.01: pauses.append((time.time(), info["generation"], round(took, 4)))
gc.callbacks.append(_gc)
def dump():
    settings = None
    while True:
        if settings is None or settings[0] != gc.get_threshold():   # counting the frozen objects walks them all
            settings = (gc.get_threshold(), gc.get_freeze_count())
        tmp = f"{stats}.{os.getpid()}.tmp"
        with open(tmp, "w") as f: json.dump({"pid": os.getpid(), "statements": counts["statements"], "t": time.time(),
                                             "gc": list(pauses), "gc_threshold": settings[0],
                                             "gc_frozen": settings[1]}, f)
        os.replace(tmp, f"{stats}.{os.getpid()}"); time.sleep(0.2)
if num_procs == 1: threading.Thread(target=dump, daemon=True).start()
from opsux.ui.server import serve
serve(db=url, port=port, as_user=user, num_procs=num_procs)
"""


class Server:
    "`opsux.ui.server.serve` in a subprocess on a free loopback port."
    def __init__(self, url: str, user_email: str, tmp: Path, num_procs: int = 1, cli: bool = False,
                 env: dict | None = None, args: list[str] = ()):
        self.port, self.tmp = free_port(), tmp
        self.base = f"http://127.0.0.1:{self.port}"
        self.stats = str(tmp / f"stats-{self.port}")
        env = dict(os.environ, OPSUX_HOME=str(tmp / "home"), PYTHONUNBUFFERED="1", **(env or {}))
        self.log = open(tmp / f"server-{self.port}.log", "w")
        cmd = ([sys.executable, "-m", "opsux.cli", "serve", "--db", url, "--port", str(self.port), "--as", user_email,
                "--num-procs", str(num_procs), *args] if cli else
               [sys.executable, "-c", SERVER_CODE, url, str(self.port), user_email, self.stats, str(num_procs)])
        # its own process group: `--num-procs` forks children that outlive a terminated parent
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(tmp),
                                     start_new_session=True)
        try: wait_ready(self.base, self.proc, timeout=180.0)
        except Exception:
            self.stop(); raise

    def _stats(self) -> dict:
        "What the server process last wrote about itself (every 0.2 s)."
        return json.loads(Path(f"{self.stats}.{self.proc.pid}").read_text())

    def statements(self) -> int:
        "SQL statements the server process has sent so far."
        return self._stats()["statements"]

    def gc_settings(self) -> dict:
        "The server process's collector: thresholds and how many objects it froze (`opsux.ui.server.tune_gc`)."
        d = self._stats()
        return dict(threshold=tuple(d["gc_threshold"]), frozen=d["gc_frozen"])

    def gc_pauses(self, since: float, until: float) -> list:
        "The server's garbage collections of 10 ms or more that ended between `since` and `until`: (end, generation, s)."
        time.sleep(0.3)                     # the server writes its stats every 0.2 s
        return [p for p in self._stats()["gc"] if since <= p[0] <= until]

    def log_text(self) -> str:
        return (self.tmp / f"server-{self.port}.log").read_text()

    def stop(self):
        "Terminate the server and every process it forked (its process group)."
        import signal
        try: os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: self.proc.wait(15)
        except subprocess.TimeoutExpired: pass
        try: os.killpg(self.proc.pid, signal.SIGKILL)       # forked children that ignored SIGTERM
        except ProcessLookupError: pass
        self.proc.wait(10)
        self.log.close()


# ---------------------------------------------------------------------------------------------------------------
# Workers and the list timer, each in its own process
# ---------------------------------------------------------------------------------------------------------------
def worker_main(url: str, tenant_id: int, user_ids: list[int], operator_id: int, threads: int, interval: float,
                stop_at: float, out: str):
    "`threads` workers: enqueue → start → total 40 → advance every `interval` s → complete, until `stop_at`."
    from opsux.store.ops import connect
    ops = connect(url)
    types = [t for t in ops.catalog.types()]
    others = [u for u in user_ids if u != operator_id] or user_ids   # the operator's runs: exactly a third
    done, errors, lock = [0], [], threading.Lock()
    def work(i):
        rng = random.Random(i)
        while time.time() < stop_at:
            try:
                who = operator_id if i % 3 == 0 else rng.choice(others)
                run = ops.runs.enqueue(tenant_id, rng.choice(types), user=who, context={"source": "bench/serve.py"})
                ops.runs.start(run); ops.runs.set_total(run, 40)
                for _ in range(40):
                    if time.time() >= stop_at: break
                    time.sleep(interval * rng.uniform(0.5, 1.5))
                    ops.runs.advance(run, processed=1, succeeded=1)
                    with lock: done[0] += 1
                ops.runs.complete(run)
            except Exception as e:
                with lock: errors.append(repr(e)[:200])
                time.sleep(0.5)
    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    Path(out).write_text(json.dumps({"advances": done[0], "errors": errors[:20]}))
    ops.close()


def timer_main(url: str, operator_email: str, stop_at: float, out: str, every: float = 0.25):
    "Time the operator's list page (`viewer.runs`, four shapes in turn) until `stop_at`; one JSON line per sample."
    from opsux.store.ops import connect
    ops = connect(url)
    v = ops.viewer(operator_email)
    deepest = v.runs(limit=25).items[-1].id - 200_000   # a page deep in the history
    kinds = [("first page", dict()), ("status failed", dict(status="failed")),
             ("type filter", dict(type="policy.sync")), ("deep page", dict(after=deepest))]
    with open(out, "w") as f:
        i = 0
        while time.time() < stop_at:
            name, kw = kinds[i % len(kinds)]
            t0 = time.perf_counter(); v.runs(limit=25, **kw); dt = time.perf_counter() - t0
            f.write(json.dumps({"t": time.time(), "what": name, "s": dt}) + "\n")
            f.flush(); i += 1
            time.sleep(every)
    ops.close()


def page_gets(base: str, n: int = 10) -> list[float]:
    "Seconds for `n` GETs of /operations (each reads the first view: user, tenants, list, widget, unread count)."
    import urllib.request
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(base + "/operations", timeout=60) as r: r.read()
        out.append(time.perf_counter() - t0)
        time.sleep(0.5)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def pg_xacts(url: str) -> int:
    import psycopg
    from sqlalchemy.engine import make_url
    u = make_url(url)
    dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as con:
        return con.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                           (u.database,)).fetchone()[0]


def prepare(url: str, runs: int):
    "Seed when the database holds fewer than `runs` runs; returns (ops, operator, tenant id, tenant user ids)."
    from opsux.store.ops import connect
    from opsux.store.seed import seed
    from sqlalchemy import text
    ops = connect(url)
    with ops.engine.connect() as con:
        have = con.execute(text("SELECT count(*) FROM operation_runs")).scalar()
    if have < runs:
        print(f"seeding {runs - have:,} runs ...", flush=True)
        print("seeded:", seed(ops, runs=runs - have, tenants=4), flush=True)
    reaped = ops.runs.reap(max_idle=timedelta(minutes=1))     # runs an earlier, stopped benchmark left running
    if reaped: print(f"reaped {len(reaped)} runs left active (silent for a minute)", flush=True)
    operator = sorted(ops.directory.users(), key=lambda u: u.id)[0]
    tenant = ops.viewer(operator).tenants()[0]
    members = [u.id for u in ops.directory.users() if tenant.id in set(ops.directory.memberships(u))]
    with ops.engine.connect() as con:
        total = con.execute(text("SELECT count(*) FROM operation_runs")).scalar()
    return ops, operator, tenant, members, total


def measure_push(ops, swarm, tenant, operator, seconds: float, samples_every: float = 1.0):
    "Advance a probe run of the operator about once a second; per sample, each session's commit→patch latency."
    # the operator has at most 7 worker runs active at once (workers 0, 3, ..., 18; the others start runs for the
    # tenant's other members), so the probe stays among the runs the widget shows (ProgressWidgetModel.limit;
    # running runs first, the longest running on top: the probe runs for the whole phase)
    run = ops.runs.enqueue(tenant, "inventory.sync", user=operator, context={"source": "bench probe"})
    ops.runs.start(run); ops.runs.set_total(run, 100)
    swarm.watched.add(run.id)
    ops.runs.advance(run, processed=1, succeeded=1)       # the run is on every page now (not measured)
    swarm.wait_seen(run.id, 1, timeout=30)
    lat, missed, end, i = [], 0, time.monotonic() + seconds, 1
    while time.monotonic() < end and i < 99:
        time.sleep(random.uniform(0.5, 1.0) * samples_every)
        i += 1
        ops.runs.advance(run, processed=1, succeeded=1)
        committed = time.time()
        for seen in swarm.wait_seen(run.id, i, timeout=15):
            if seen is None: missed += 1
            else: lat.append(seen - committed)
    ops.runs.complete(run)
    swarm.watched.discard(run.id)
    return lat, missed, i - 1            # the first advance only put the run on the pages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="PostgreSQL URL (default: a private throwaway server)")
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--sessions", default="1,50,200")
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--advance-interval", type=float, default=0.5, help="seconds between a worker's advances")
    ap.add_argument("--phase-seconds", type=float, default=40)
    ap.add_argument("--max-minutes", type=float, default=15)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    import psutil
    hard_stop = time.time() + args.max_minutes * 60
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))             # clean up (finally) when terminated
    stopper = threading.Timer(args.max_minutes * 60 + 60, lambda: os.kill(os.getpid(), signal.SIGTERM))
    stopper.daemon = True; stopper.start()                                # self-stopping, whatever happens

    if args.db: url = args.db
    else:
        from pgserver import start_postgres, fresh_database
        url = fresh_database(start_postgres(durable=True))
    t0 = time.time()
    ops, operator, tenant, members, total = prepare(url, args.runs)
    print(f"database: {total:,} runs; operator {operator.email} in tenant {tenant.name} "
          f"({len(members)} members); prepared in {time.time() - t0:.0f}s", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="opsux-bench-serve-"))
    server = Server(url, operator.email, tmp)
    sproc = psutil.Process(server.proc.pid)
    ctx = mp.get_context("spawn")
    levels = [int(x) for x in args.sessions.split(",")]
    stop_at = hard_stop                     # workers and timer run until the end (terminated in `finally`)
    workers = ctx.Process(daemon=True, target=worker_main, args=(url, tenant.id, members, operator.id, args.workers,
                                                    args.advance_interval, stop_at, str(tmp / "workers.json")))
    timer = ctx.Process(daemon=True, target=timer_main, args=(url, operator.email, stop_at, str(tmp / "timer.jsonl")))
    workers.start(); timer.start()
    swarm = SessionSwarm()
    results = {"runs": total, "workers": args.workers, "advance_interval": args.advance_interval, "phases": []}
    try:
        time.sleep(5)                       # workers up
        results["server_gc"] = server.gc_settings()
        for n in [0] + levels:
            if time.time() > hard_stop - args.phase_seconds: print("time limit: stopping early"); break
            more = n - len(swarm.sessions)
            t_open = time.perf_counter()
            budget = hard_stop - args.phase_seconds - 30 - time.time()
            try:
                if more > 0: swarm.open(server.base, more, timeout=max(1, budget))
            except TimeoutError:
                msg = (f"could not open {n} sessions: {len(swarm.sessions)} open after "
                       f"{time.perf_counter() - t_open:.0f}s (the server is saturated); stopping")
                print(msg, flush=True); results["stopped"] = msg
                break
            open_s = time.perf_counter() - t_open
            time.sleep(3)                   # let the page builds settle
            rss0 = sproc.memory_info().rss
            sproc.cpu_percent(None)
            s0, x0, w0 = server.statements(), pg_xacts(url), time.time()
            p0 = sum(s.patches for s in swarm.sessions)
            lat, missed, samples = (measure_push(ops, swarm, tenant, operator, args.phase_seconds) if n
                                    else (time.sleep(args.phase_seconds), [], 0, 0)[1:])
            w1 = time.time()
            s1, x1 = server.statements(), pg_xacts(url)
            cpu, rss = sproc.cpu_percent(None), sproc.memory_info().rss
            dt = w1 - w0
            gcs = server.gc_pauses(w0, w1)
            lines = [json.loads(l) for l in (tmp / "timer.jsonl").read_text().splitlines() if l.strip()]
            lines = [l for l in lines if w0 <= l["t"] <= w1]
            vr = [l["s"] for l in lines]
            alive = sum(not s.closed for s in swarm.sessions)
            if not (workers.is_alive() and timer.is_alive()):
                print("warning: the workers or the list timer stopped during this phase", flush=True)
            ph = dict(sessions=n, alive=alive, seconds=round(dt, 1), open_seconds=round(open_s, 1),
                      statements_per_s=round((s1 - s0) / dt, 1), db_xacts_per_s=round((x1 - x0) / dt, 1),
                      server_cpu_percent=round(cpu, 1), server_rss_mb=round(rss / 2**20, 1),
                      push_samples=samples, push_deliveries=len(lat), push_missed=missed,
                      push_p50_ms=round(pct(lat, .5) * 1000, 1) if lat else None,
                      push_p95_ms=round(pct(lat, .95) * 1000, 1) if lat else None,
                      push_max_ms=round(max(lat) * 1000, 1) if lat else None,
                      list_p50_ms=round(pct(vr, .5) * 1000, 1) if vr else None,
                      list_p95_ms=round(pct(vr, .95) * 1000, 1) if vr else None,
                      list_max_ms=round(max(vr) * 1000, 1) if vr else None,
                      gc_pauses=len(gcs), gc_full=sum(g == 2 for _, g, _ in gcs),
                      gc_max_ms=round(max((s for *_, s in gcs), default=0) * 1000, 1),
                      patches_per_session_s=round((sum(s.patches for s in swarm.sessions) - p0) / max(1, n) / dt, 1)
                      if n else None)
            results["phases"].append(ph)
            print(json.dumps(ph), flush=True)
        # whole-page GETs last: a GET builds a session that stays subscribed until bokeh expires it unused,
        # which would add its reads to the phases above
        gets = page_gets(server.base) if not results.get("stopped") else []
        if gets: results["page_get"] = dict(sessions_open=len(swarm.sessions), n=len(gets),
                                   p50_ms=round(pct(gets, .5) * 1000, 1), max_ms=round(max(gets) * 1000, 1))
        if gets: print(json.dumps(results["page_get"]), flush=True)
    finally:
        swarm.close()
        workers.terminate(); timer.terminate()
        server.stop()
        ops.close()
        report(results)
        if args.json: Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def report(r):
    ph = {p["sessions"]: p for p in r["phases"]}
    if r.get("stopped"): print(r["stopped"])
    print(f"\n== opsux serve under load: {r['runs']:,} runs, {r['workers']} workers "
          f"(one advance each per ~{r['advance_interval']}s) ==")
    if r.get("server_gc"): print(f"server's collector: thresholds {r['server_gc']['threshold']}, "
                                 f"{r['server_gc']['frozen']:,} objects frozen at start")
    print(f"{'sessions':>8} {'stmt/s':>8} {'db xact/s':>10} {'cpu%':>6} {'rss MB':>7} {'push p50':>9} {'p95':>7} "
          f"{'max':>7} {'missed':>6} {'list p50':>9} {'p95':>6} {'gc max':>7}")
    for n, p in ph.items():
        f = lambda v: "-" if v is None else f"{v:.0f}"
        print(f"{n:>8} {p['statements_per_s']:>8.1f} {p['db_xacts_per_s']:>10.1f} {p['server_cpu_percent']:>6.0f} "
              f"{p['server_rss_mb']:>7.0f} {f(p['push_p50_ms']):>9} {f(p['push_p95_ms']):>7} {f(p['push_max_ms']):>7} "
              f"{p['push_missed']:>6} {f(p['list_p50_ms']):>9} {f(p['list_p95_ms']):>6} {f(p.get('gc_max_ms')):>7}")
    ns = sorted(n for n in ph if n)
    if len(ns) >= 2 and ph[ns[0]]["statements_per_s"]:
        lo, hi = ph[ns[0]], ph[ns[-1]]
        ratio = hi["statements_per_s"] / lo["statements_per_s"]
        print(f"dashboard statements/s {ns[-1]} vs {ns[0]} sessions: x{ratio:.2f} (target: flat, ~x1)")
        print(f"server RSS per session: {(hi['server_rss_mb'] - lo['server_rss_mb']) / (ns[-1] - ns[0]) * 1024:.0f} KB")
    if r.get("page_get"):
        g = r["page_get"]
        print(f"GET /operations with {g['sessions_open']} sessions open: p50 {g['p50_ms']} ms, max {g['max_ms']} ms (n={g['n']})")
    if ns:
        top = ph[ns[-1]]
        print(f"push p95 at {ns[-1]} sessions: {top['push_p95_ms']} ms (target <= 1500 ms); "
              f"list page p95 {top['list_p95_ms']} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
