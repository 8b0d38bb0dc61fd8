"""API benchmark: a page of `GET /api/runs` from a real `opsux serve` beside the raw SQL of the same page, and
`GET /metrics` on a big database.

    python bench/api.py [--runs 100000] [--metrics-runs 1000000] [--tenants 20] [--db ADMIN_URL] [--sqlite]

Seeds `--runs` runs (`opsux.store.seed.seed`), gives one user a token, serves the dashboard (`opsux serve --auth
basic`, a subprocess) and measures medians over repeated requests on one keep-alive connection: the first page, a
page 200 pages deep (keyset `after`) and a filtered page (status=failed), 100 rows each, beside the raw SQL of the
same page (psycopg or sqlite3: SELECT and fetch). Target: API page ≤ 2× raw SQL. Also printed: the raw SQL plus
`json.dumps` of its rows, and the CSV download of every visible run. Then `/metrics` (five GROUP BY aggregates) on
a database of `--metrics-runs` runs, in process and over HTTP. PostgreSQL always (a private server with fsync on,
unless `--db`); `--sqlite` repeats the page figures on SQLite. Results go to bench/results/api.json.
"""
from __future__ import annotations

import argparse, http.client, json, os, sqlite3, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import opsux  # noqa: E402
from opsux.store.seed import seed  # noqa: E402
from opsux.ui.api import metrics_text  # noqa: E402
import pgserver  # noqa: E402
from security_support import Served  # noqa: E402
from timing import samples  # noqa: E402

COLS = ("id, tenant_id, user_id, initiator_name, type, status, outcome, started_at, completed_at, summary_counts, "
        "failure_summary, context, created_at, updated_at, identity, heartbeat_at, attempt, attempts, job_id, "
        "cancel_requested_at")
PAGE = 100
FAILED = "AND (lower(trim(status)) = 'failed' OR lower(trim(outcome)) = 'failed')"   # status=failed, as raw SQL


def timed(fn, reps=40, warmup=5):
    "Median milliseconds of fn() over reps calls (after warmup calls)."
    return statistics.median(samples(fn, reps, warmup))


class Http:
    "One keep-alive connection to the server, with the bearer token."
    def __init__(self, port, token):
        self.con, self.h = http.client.HTTPConnection("127.0.0.1", port, timeout=600), {"Authorization": f"Bearer {token}"}
    def get(self, path) -> bytes:
        self.con.request("GET", path, headers=self.h)
        r = self.con.getresponse()
        body = r.read()
        assert r.status == 200, (path, r.status, body[:300])
        return body


def vacuum(url):
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as c:
        c.execute("VACUUM ANALYZE operation_runs")


def the_user(ops):
    "The user with the most visible runs (seeded users are in one tenant each), and their tenant ids."
    with ops.engine.connect() as c:
        uid = c.exec_driver_sql("SELECT m.user_id FROM tenant_memberships m JOIN operation_runs r ON r.tenant_id = "
                                "m.tenant_id GROUP BY m.user_id ORDER BY count(*) DESC, m.user_id LIMIT 1").scalar()
    return uid, list(ops.viewer(uid).tenant_ids)


def raw_pages(ops, url, tids):
    "fetch(sql_suffix, args) -> rows, with the dialect's placeholders; the raw driver, no SQLAlchemy."
    if ops.is_postgres:
        con = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True)
        scope = "tenant_id = ANY(%s)"
        return con, lambda where, args: con.execute(
            f"SELECT {COLS} FROM operation_runs WHERE {scope} {where} ORDER BY id DESC LIMIT {PAGE + 1}",
            (tids, *args)).fetchall()
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    scope = f"tenant_id IN ({','.join('?' * len(tids))})"
    return con, lambda where, args: con.execute(
        f"SELECT {COLS} FROM operation_runs WHERE {scope} {where.replace('%s', '?')} ORDER BY id DESC LIMIT {PAGE + 1}",
        (*tids, *args)).fetchall()


def deep_page(raw, tids) -> tuple[int, int, int]:
    "(runs visible, depth, cursor) on a raw connection: page `depth` (200, or the deepest full page) starts after `cursor`."
    scope = f"tenant_id IN ({','.join(map(str, tids))})"
    n_visible = raw.execute(f"SELECT count(*) FROM operation_runs WHERE {scope}").fetchone()[0]
    depth = min(200, n_visible // PAGE - 1)         # a full page that deep
    deep = raw.execute(f"SELECT id FROM operation_runs WHERE {scope} ORDER BY id DESC LIMIT 1 "
                       f"OFFSET {(depth - 1) * PAGE - 1}").fetchone()[0]
    return n_visible, depth, deep


def bench_pages(kind, url, runs, tenants, rows):
    ops = opsux.connect(url)
    t0 = time.perf_counter()
    seed(ops, runs=runs, tenants=tenants, random_seed=3)
    print(f"\n{kind}: seeded {runs:,} runs across {tenants} tenants in {time.perf_counter() - t0:.1f} s",
          flush=True)
    if ops.is_postgres:
        vacuum(url)
    uid, tids = the_user(ops)
    token = ops.tokens.create(uid, "bench")[1]
    raw, fetch = raw_pages(ops, url, tids)
    n_visible, depth, deep = deep_page(raw, tids)
    viewer = ops.viewer(uid)
    server = Served(Path(tempfile.mkdtemp()), url, "--auth", "basic", name=f"bench-{kind}")
    try:
        http_ = Http(server.port, token)
        cases = [("first page", "/api/runs?limit=100", "", (), {}),
                 (f"page {depth} (after=)", f"/api/runs?limit=100&after={deep}", "AND id < %s", (deep,),
                  {"after": deep}),
                 ("status=failed page", "/api/runs?limit=100&status=failed", FAILED, (), {"status": "failed"})]
        for name, path, where, args, kw in cases:
            got = [r["id"] for r in json.loads(http_.get(path))["items"]]
            assert got == [r[0] for r in fetch(where, args)[:PAGE]], name
            # 20 warm-ups: psycopg prepares a statement at its 6th execution and PostgreSQL keeps a generic plan
            # after 5 custom ones, on each of the server's pooled connections; a server past its first seconds
            api = timed(lambda: http_.get(path), reps=100, warmup=20)
            base = timed(lambda: fetch(where, args), reps=100, warmup=20)
            enc = timed(lambda: json.dumps([list(r) for r in fetch(where, args)], default=str), reps=100, warmup=20)
            ok = api <= 2 * base
            inner = timed(lambda: viewer.runs(limit=PAGE, **kw))         # the list page's own read
            rows.append(dict(db=kind, name=name, api_ms=round(api, 3), raw_ms=round(base, 3),
                             raw_json_ms=round(enc, 3), viewer_runs_ms=round(inner, 3), ratio=round(api / base, 2), target="<= 2x raw", ok=ok))
            print(f"  {name:<22} API {api:7.2f} ms   raw SQL {base:7.2f} ms ({api / base:4.2f}x, target <= 2x "
                  f"{'OK' if ok else 'MISSED'})   raw SQL + json.dumps {enc:7.2f} ms ({api / enc:4.2f}x)   "
                  f"Viewer.runs in process {inner:7.2f} ms", flush=True)
        t = time.perf_counter(); body = http_.get("/api/runs.csv"); secs = time.perf_counter() - t
        lines = body.count(b"\n") - 1
        assert lines == n_visible, (lines, n_visible)
        rows.append(dict(db=kind, name="CSV download", rows=lines, seconds=round(secs, 3), rows_per_s=round(lines / secs)))
        print(f"  CSV download           {lines:,} rows in {secs:.2f} s ({lines / secs:,.0f} rows/s, {len(body) / 2**20:.1f} MiB)",
              flush=True)
    finally: server.stop(); ops.close()


def bench_metrics(url, runs, tenants, rows):
    ops = opsux.connect(url)
    t0 = time.perf_counter()
    seed(ops, runs=runs, tenants=tenants, random_seed=4)
    print(f"\nPostgreSQL: seeded {runs:,} runs for /metrics in {time.perf_counter() - t0:.1f} s", flush=True)
    vacuum(url)
    inproc = timed(lambda: metrics_text(ops), reps=7, warmup=1)
    size = len(metrics_text(ops))
    ops.close()
    server = Served(Path(tempfile.mkdtemp()), url, "--auth", "basic", name="bench-metrics")
    try:
        con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        def scrape():
            con.request("GET", "/metrics"); r = con.getresponse(); r.read(); assert r.status == 200
        cold = []
        for _ in range(3):                      # answers are shared for 5 s: wait that out to measure a pass
            time.sleep(5.2)
            t = time.perf_counter(); scrape(); cold.append((time.perf_counter() - t) * 1000)
        over_http, cached = statistics.median(cold), timed(scrape, reps=20, warmup=1)
    finally: server.stop()
    rows.append(dict(db="postgresql", name=f"/metrics at {runs:,} runs", inproc_ms=round(inproc, 1),
                     http_ms=round(over_http, 1), http_cached_ms=round(cached, 2), bytes=size))
    print(f"  /metrics at {runs:,} runs: {inproc:.0f} ms in process, {over_http:.0f} ms over HTTP "
          f"({cached:.2f} ms within the 5 s it is shared; {size:,} bytes)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--metrics-runs", type=int, default=1_000_000, help="0 to skip")
    ap.add_argument("--tenants", type=int, default=4, help="the measured user sees one tenant's runs")
    ap.add_argument("--sqlite", action="store_true", help="also measure the pages on SQLite")
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"), help="admin URL of a PostgreSQL server")
    args = ap.parse_args(argv)
    admin = args.db or pgserver.start_postgres(durable=True)
    rows: list[dict] = []
    bench_pages("postgresql", pgserver.fresh_database(admin), args.runs, args.tenants, rows)
    if args.sqlite:
        bench_pages("sqlite", f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite'}", args.runs, args.tenants, rows)
    if args.metrics_runs: bench_metrics(pgserver.fresh_database(admin), args.metrics_runs, args.tenants, rows)
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps({"runs": args.runs, "results": rows}, indent=2))
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
