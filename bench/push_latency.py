"""Push latency: from a worker's commit to the change visible in a real browser.

A dashboard server runs in a subprocess; Chromium shows its Operations page (the global progress widget is in
the sidebar). This process plays the worker: for each sample it commits `advance(processed=1)` on a run with
total 100 and notes the time right after the commit returned; the page reports (via requestAnimationFrame
polling inside the page) the moment the widget shows the new percent. Both clocks are this machine's clock.

    python bench/push_latency.py [--samples 30] [--db sqlite|postgresql|both] [--sessions 1]
    python bench/push_latency.py --iter 1000000 [--db …]

`--iter N` measures instead what a tab sees while a worker runs `for x in r.iter(range(N))` (coalesced writes,
at most one every 0.25 s; the loop paced to last about 20 s): for each flush that moves the widget's whole percent,
the time from the flush's commit to the tab showing that percent (the page logs every change of the text).

`--sessions N` keeps N-1 more dashboard tabs of the same user open while measuring (all of them are pushed
every change; none polls the database).

Prints median / p95 / max per database. Target: median ≤ 1 s on PostgreSQL.
"""
from __future__ import annotations

import argparse, os, random, statistics, subprocess, sys, tempfile, textwrap, time
from contextlib import contextmanager
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


@contextmanager
def served(url: str, label: str):
    """A bench tenant and user in the database at `url`, and a dashboard server for them in a subprocess: (ops, tenant,
    user, base URL); the server is stopped and `ops` closed on exit."""
    from browser_support import free_port, wait_ready
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
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield ops, tenant, user, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate(); proc.wait(10); log.close(); ops.close()


def measure(url: str, samples: int, label: str, sessions: int = 1) -> list[float]:
    from playwright.sync_api import sync_playwright
    from browser_support import CHROMIUM, CHROMIUM_ARGS
    latencies = []
    with served(url, label) as (ops, tenant, user, base):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            others = []
            for _ in range(sessions - 1):
                other = browser.new_page()
                other.goto(f"{base}/operations")
                other.locator(".ox-table").wait_for()
                others.append(other)
            page = browser.new_page()
            page.goto(f"{base}/operations")
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
    return latencies


WATCH = """([runId]) => {
  window.__seen = [];
  const deep = root => {
    const hit = root.querySelector(`.ox-row[data-run-id="${runId}"] .ox-percent`);
    if (hit) return hit;
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const r = deep(el.shadowRoot); if (r) return r; }
    return null;
  };
  let last = null;
  const tick = () => {
    const el = deep(document), text = el ? el.textContent.trim() : null;
    if (text !== last) { last = text; window.__seen.push([Date.now(), text]); }
    requestAnimationFrame(tick);
  };
  tick();
}"""


def measure_iter(url: str, items: int, label: str) -> tuple[list[float], dict]:
    "Latencies (s) from each percent-moving flush of an `r.iter` loop to the tab showing it; and loop facts."
    import threading
    from playwright.sync_api import sync_playwright
    from browser_support import CHROMIUM, CHROMIUM_ARGS
    flushes, pos, facts = [], [0], {}
    with served(url, f"iter-{label}") as (ops, tenant, user, base):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{base}/operations")
            page.locator(".ox-table").wait_for()
            run = ops.runs.enqueue(tenant, "inventory.sync", user=user, context={"source": "push latency bench"})
            page.wait_for_function(FIND_PERCENT.replace("want === null ||", "true ||"), arg=[run.id, None],
                                   polling="raf", timeout=15000)
            page.evaluate(WATCH, [run.id])
            mine = lambda ev: ev.run_id == run.id and ev.kind == "progress" and flushes.append(
                (time.time() * 1000, pos[0]))
            unsubscribe = ops.events.subscribe(mine)
            pace = max(1, items // 2000)               # 2,000 pauses of 10 ms: about 20 s in all

            def work():
                t0 = time.perf_counter()
                with ops.runs.track(run) as r:
                    for i, _ in enumerate(r.iter(range(items)), 1):
                        pos[0] = i
                        if i % pace == 0: time.sleep(0.01)
                facts["loop_s"] = round(time.perf_counter() - t0, 2)
            worker = threading.Thread(target=work); worker.start(); worker.join()
            unsubscribe()
            time.sleep(1.0)
            seen = page.evaluate("window.__seen")
            browser.close()
        facts["stored"] = ops.runs.get(run).summary_counts.get("processed")
    facts["flushes"] = len(flushes)
    shown = [(t, int(x.rstrip("%"))) for t, x in seen if x and x.endswith("%")]
    latencies, last_pct = [], -1
    for t_commit, done in flushes:
        pct = min(100, done * 100 // items)
        if pct <= last_pct: continue                 # this flush did not move the whole percent
        last_pct = pct
        hit = next((t for t, v in shown if v >= pct and t >= t_commit - 5), None)
        if hit is not None: latencies.append((hit - t_commit) / 1000)
    facts["percent_changes_seen"] = len(shown)
    return latencies, facts


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
    ap.add_argument("--iter", type=int, default=0, metavar="N", help="measure a tab during an r.iter loop of N items")
    args = ap.parse_args(argv)
    if args.iter:
        urls = []
        if args.db in ("postgresql", "both"):
            from pgserver import ensure_postgres, fresh_database
            urls.append(("postgresql", fresh_database(ensure_postgres())))
        if args.db in ("sqlite", "both"):
            urls.append(("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='opsux-bench-')}/bench.sqlite"))
        for label, url in urls:
            xs, facts = measure_iter(url, args.iter, label)
            report(f"{label} iter", xs)
            p95 = sorted(xs)[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")
            print(f"  {facts}; target p95 <= 500 ms -> {'met' if p95 <= 0.5 else 'NOT met'}", flush=True)
        return
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
