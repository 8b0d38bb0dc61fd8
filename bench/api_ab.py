"""A/B benchmark of the JSON API: two checkouts of opsux served on one PostgreSQL database, requests interleaved.

    python bench/api_ab.py OTHER_CHECKOUT [--runs 100000] [--reps 200] [--db ADMIN_URL]

A noisy machine moves every figure of bench/api.py by up to 2x between runs; this compares two versions of the
code within one run. It seeds `--runs` runs (as bench/api.py does), gives the user who sees the most runs a token,
starts `opsux serve --auth basic` in OTHER_CHECKOUT (e.g. a `git worktree` of the commit before) and in this
checkout (each run from its own directory, so each imports its own `opsux`), checks that both answer every path
with the same bytes, then times old, new and the raw SQL of the same page in turn, `--reps` times per path, on one
keep-alive connection each. Prints medians and the ratios new/old, old/raw and new/raw.
"""
from __future__ import annotations

import argparse, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))

import opsux  # noqa: E402
import pgserver  # noqa: E402
from api import FAILED, PAGE, Http, deep_page, raw_pages, the_user, vacuum  # noqa: E402
from opsux.store.seed import seed  # noqa: E402
from security_support import Served  # noqa: E402

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
    _, depth, deep = deep_page(raw, tids)
    ops.close()
    servers = [Served(Path(tempfile.mkdtemp()), url, "--auth", "basic", name=name, root=root)
               for name, root in (("old", args.other.resolve()), ("new", ROOT))]
    old, new = (Http(s.port, token) for s in servers)
    try:
        paths = [("first page", f"/api/runs?limit={PAGE}", "", ()),
                 (f"page {depth} (after=)", f"/api/runs?limit={PAGE}&after={deep}", "AND id < %s", (deep,)),
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
        for s in servers: s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
