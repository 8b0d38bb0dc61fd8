"""A/B benchmark of the JSON API: two checkouts of opsux served on one PostgreSQL database, requests interleaved.

    python bench/api_ab.py OTHER_CHECKOUT [--runs 100000] [--reps 200] [--db ADMIN_URL]

A noisy machine moves every figure of bench/api.py by up to 2x between runs; this compares two versions of the
code within one run. It seeds `--runs` runs (as bench/api.py does), gives the user who sees the most runs a token,
starts `opsux serve --auth basic` from OTHER_CHECKOUT (e.g. a `git worktree` of the commit before) and from this
checkout, checks that both answer every path with the same bytes, then times old, new and the raw SQL of the same
page in turn, `--reps` times per path, on one keep-alive connection each. Prints medians and the ratios
new/old, old/raw and new/raw.
"""
from __future__ import annotations

import argparse, http.client, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))

import opsux  # noqa: E402
import pgserver  # noqa: E402
from api import PAGE, raw_pages, the_user, vacuum  # noqa: E402
from opsux.store.seed import seed  # noqa: E402
from security_support import SECRET, Client  # noqa: E402
from support import free_port  # noqa: E402

FAILED = "AND (lower(trim(status)) = 'failed' OR lower(trim(outcome)) = 'failed')"


class Server:
    "`python -m opsux.cli serve` run from `tree`, with one keep-alive connection carrying the bearer token."
    def __init__(self, tree: Path, url: str, token: str):
        port, home = free_port(), tempfile.mkdtemp()
        env = {**os.environ, "OPSUX_COOKIE_SECRET": SECRET, "OPSUX_HOME": home, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--db", url, "--port", str(port),
                                      "--auth", "basic"], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                if Client(f"http://127.0.0.1:{port}").get("/healthz")[0]: break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"opsux serve from {tree} did not come up")
                time.sleep(0.1)  # polling a condition with a deadline
        self.con, self.h = http.client.HTTPConnection("127.0.0.1", port, timeout=600), {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> bytes:
        self.con.request("GET", path, headers=self.h)
        r = self.con.getresponse()
        body = r.read()
        assert r.status == 200, (path, r.status, body[:300])
        return body

    def stop(self):
        self.proc.terminate(); self.proc.wait(30)


def ms(fn) -> float:
    t = time.perf_counter(); fn(); return (time.perf_counter() - t) * 1000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="the other checkout (the code before), e.g. a git worktree")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--tenants", type=int, default=4)
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"), help="admin URL of a PostgreSQL server")
    args = ap.parse_args(argv)
    url = pgserver.fresh_database(args.db or pgserver.start_postgres(durable=True))
    ops = opsux.connect(url)
    seed(ops, runs=args.runs, tenants=args.tenants, random_seed=3)
    vacuum(url)
    uid, tids = the_user(ops)
    token = ops.tokens.create(uid, "bench")[1]
    raw, fetch = raw_pages(ops, url, tids)
    deep = raw.execute("SELECT id FROM operation_runs WHERE tenant_id = ANY(%s) ORDER BY id DESC LIMIT 1 OFFSET %s",
                       (tids, 199 * PAGE - 1)).fetchone()[0]
    ops.close()
    old, new = Server(args.other.resolve(), url, token), Server(ROOT, url, token)
    try:
        paths = [("first page", f"/api/runs?limit={PAGE}", "", ()),
                 ("page 200 (after=)", f"/api/runs?limit={PAGE}&after={deep}", "AND id < %s", (deep,)),
                 ("status=failed page", f"/api/runs?limit={PAGE}&status=failed", FAILED, ())]
        print(f"PostgreSQL, {args.runs:,} runs; old = {args.other}, new = {ROOT}; medians of {args.reps} each, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for name, path, where, fargs in paths:
            assert old.get(path) == new.get(path), f"{name}: the two checkouts answer differently"
            for _ in range(20): old.get(path); new.get(path); fetch(where, fargs)
            a, b, r = [], [], []
            for _ in range(args.reps):
                a.append(ms(lambda: old.get(path))); b.append(ms(lambda: new.get(path))); r.append(ms(lambda: fetch(where, fargs)))
            o, n, w = (statistics.median(x) for x in (a, b, r))
            print(f"  {name:<20} old {o:6.2f} ms  new {n:6.2f} ms  new/old {n / o:4.2f}   raw {w:5.2f} ms   "
                  f"old/raw {o / w:4.2f}x  new/raw {n / w:4.2f}x", flush=True)
    finally:
        old.stop(); new.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
