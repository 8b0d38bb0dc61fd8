"""Push latency: from a worker's commit to the change visible in a real browser.

A dashboard server runs in a subprocess; Chromium shows its Operations page (the global progress widget is in
the sidebar). This process plays the worker: for each sample it commits `advance(processed=1)` on a run with
total 100 and notes the time right after the commit returned; the page reports (via requestAnimationFrame
polling inside the page) the moment the widget shows the new percent. Both clocks are this machine's clock.

    python bench/push_latency.py [--samples 30] [--db sqlite|postgresql|both] [--sessions 1]

`--sessions N` keeps N-1 more dashboard tabs of the same user open while measuring (all of them are pushed
every change; none polls the database).

Prints median / p95 / max per database. Target: median ≤ 1 s on PostgreSQL.
"""
from __future__ import annotations

import argparse, os, random, statistics, subprocess, sys, tempfile, textwrap, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

FIND_PERCENT = """([runId, want]) => {
  const deep = root => {
    const hit = root.querySelector(`.ox-row[data-run-id="${runId}"] .ox-percent`);
    if (hit) return hit;
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const r = deep(el.shadowRoot); if (r) return r; }
    return null;
  };
  const el = deep(document);
  if (!el) return null;
  return (want === null || el.textContent.trim() === want) ? Date.now() : null;
}"""


def measure(url: str, samples: int, label: str, sessions: int = 1) -> list[float]:
    from playwright.sync_api import sync_playwright
    from browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, wait_ready
    from opsux.store.ops import connect
    ops = connect(url)
    tenant = ops.directory.add_tenant(f"Bench {label}")
    user = ops.directory.add_user("Bench Operator", email=f"bench-{label}@opsux.test", tenants=[tenant])
    port, tmp = free_port(), tempfile.mkdtemp(prefix="opsux-bench-")
    code = textwrap.dedent(f"""
        from opsux.ui.server import serve
        serve(db={url!r}, port={port}, as_user={user.email!r})
    """)
    log = open(Path(tmp) / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OPSUX_HOME=tmp), cwd=str(ROOT))
    latencies = []
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            others = []
            for _ in range(sessions - 1):
                other = browser.new_page()
                other.goto(f"http://127.0.0.1:{port}/operations")
                other.locator(".ox-table").wait_for()
                others.append(other)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/operations")
            page.locator(".ox-table").wait_for()
            run = ops.runs.enqueue(tenant, "inventory.sync", user=user, context={"source": "push latency bench"})
            ops.runs.set_total(run, 100)
            page.wait_for_function(FIND_PERCENT, arg=[run.id, None], polling="raf", timeout=15000)
            for i in range(1, samples + 1):
                time.sleep(random.uniform(0.3, 0.8))      # spread samples over the watcher's cycle
                ops.runs.advance(run, processed=1, succeeded=1)
                committed = time.time() * 1000
                seen = page.wait_for_function(FIND_PERCENT, arg=[run.id, f"{i}%"], polling="raf",
                                              timeout=15000).json_value()
                latencies.append((seen - committed) / 1000)
            ops.runs.complete(run)
            browser.close()
    finally:
        proc.terminate(); proc.wait(10); log.close(); ops.close()
    return latencies


def report(label: str, xs: list[float], sessions: int = 1) -> None:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    print(f"{label:<11} sessions={sessions:<3} n={len(xs):>3}  median {statistics.median(xs) * 1000:7.1f} ms  "
          f"p95 {p95 * 1000:7.1f} ms  max {xs[-1] * 1000:7.1f} ms  min {xs[0] * 1000:6.1f} ms", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--sessions", type=int, default=1, help="dashboard tabs open at once (>= 1)")
    args = ap.parse_args(argv)
    results = {}
    if args.db in ("postgresql", "both"):
        from pgserver import ensure_postgres, fresh_database
        results["postgresql"] = measure(fresh_database(ensure_postgres()), args.samples, "pg", args.sessions)
        report("postgresql", results["postgresql"], args.sessions)
    if args.db in ("sqlite", "both"):
        url = f"sqlite:///{tempfile.mkdtemp(prefix='opsux-bench-')}/bench.sqlite"
        results["sqlite"] = measure(url, args.samples, "sqlite", args.sessions)
        report("sqlite", results["sqlite"], args.sessions)
    if "postgresql" in results:
        med = statistics.median(results["postgresql"])
        print(f"target: median <= 1000 ms on PostgreSQL -> {'met' if med <= 1.0 else 'NOT met'} ({med * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
