"""Page-load benchmark: what a browser downloads and what the server spends for each page of the dashboard.

One `opsux serve --auth basic` runs in a subprocess on a seeded SQLite database (100k and 1M runs by default;
seeded once into --dir and reused). The system Chromium (Playwright) opens the login page, signs in, then
opens the Operations list and a run's detail page, each `--loads` times:
- cold: a fresh browser context (empty cache) per load; warm: the same page again in the same context;
- bytes: what crossed the wire for HTTP (Chromium's `encodedDataLength`, headers included, from the DevTools
  protocol), requests made, and requests that left 127.0.0.1 (offline pages make none);
- first row painted: from navigation start until the first animation frame in which the list's first run row
  (detail: the run's facts; login: the sign-in button) is visible, taken in the page itself (a
  `requestAnimationFrame` loop from the document's start, inside shadow roots too), whether in the first view
  (the rows the page's HTML holds, before BokehJS has started) or in the live page; RQ Dashboard's the same way;
- live page: from `goto` until Playwright sees the live page's rows (facts); Playwright can look only between
  the page's scripts, so this is later than the paint;
- server CPU per page load: the server process's user+system CPU from navigation start until the page is
  shown and its websocket session settled (0.5 s after), less what the idle server spends in that time;
  and the server CPU of the HTML GET alone (a plain HTTP client with the browser's cookies).

    python bench/pageload.py [--runs 100000,1000000] [--loads 5] [--dir /tmp/opsux-pageload]

With `--compare rq` (sizes 10000,100000 and 7 loads by default) the same figures for RQ Dashboard
(bench/rq_dashboard.py: its own venv, a throwaway Redis filled with as many jobs through rq's API) on the same
machine: a queue's finished jobs (its list), a job's page and the queue's failed jobs, against opsux's list, a
run's page and `/operations?status=failed`, 25 rows a page on both sides; opsux and RQ Dashboard loads alternate
(A/B, then B/A). RQ Dashboard's server CPU counts the dashboard and its Redis (opsux's SQLite is in-process; the
dashboard alone is printed too); its "GET CPU" is the page and its first JSON request. Then `--clients` (20)
threads of loads without a browser for `--client-seconds` (30) per side, in alternating halves: opsux's list
page GET, its websocket and the whole document (`PULL-DOC`: the page is built when its websocket comes, since
the first view); RQ Dashboard's page and its jobs JSON: loads/s, p50/p95 and CPU per load. Each figure is printed with the
ratio opsux / RQ Dashboard and the issue's targets (first row cold <= 1.0x, warm <= 0.5x, CPU per load <= 1.0x).

    python bench/pageload.py --compare rq [--runs 10000,100000] [--loads 7] [--clients 20]

Loopback only; every server it starts is stopped when it ends.
"""
from __future__ import annotations

import argparse, statistics, sys, time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the tests' own helpers)
from security_support import Served  # noqa: E402
from rq_dashboard import Measured  # noqa: E402  (bench/, the script's folder: CPU time and a plain GET)

EMAIL, PASSWORD = "bench@opsux.test", "bench-long-password-1"
CLIENT_EMAILS = [f"bench-client-{n}@opsux.test" for n in range(20)]   # --clients: one person each (opsux
                                      # caps the websockets one person holds, as a browser's tabs would hit it)
READY = {"list": "table.ox-runs tbody tr", "detail": ".ox-facts, .ox-run-title, .ox-not-found",   # first rows:
         "login": "#login-submit"}   # the first view's (from the HTML) or the live page's, inside its shadow roots
LIVE = {"list": ".ox-table tbody tr", "detail": ".ox-detail .ox-facts, .ox-detail h2",   # the live page, started
        "login": "#login-submit"}
FIRST_FRAME = """
(() => {
  const sel = %s;
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 &&
                          getComputedStyle(el).visibility !== "hidden"; };
  const found = root => {
    for (const el of root.querySelectorAll(sel)) if (visible(el)) return true;
    for (const el of root.querySelectorAll("*")) if (el.shadowRoot && found(el.shadowRoot)) return true;
    return false;
  };
  window.__first_frame = null;
  const tick = t => {
    if (document.documentElement && found(document)) { window.__first_frame = t; return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();"""


def record_first_frame(page, selector: str) -> None:
    """From every document `page` opens: the time (ms since its navigation started) of the first animation frame
    (the one before a paint) in which `selector` matches a visible element, in `window.__first_frame`."""
    if getattr(page, "_first_frame", None) != selector:
        import json
        page.add_init_script(FIRST_FRAME % json.dumps(selector)); page._first_frame = selector


def prepare(path: Path, runs: int) -> str:
    "A SQLite database at `path` with `runs` runs of history and a bench user in every tenant (reused)."
    from opsux.store.ops import connect
    from opsux.store.seed import seed
    url = f"sqlite:///{path}"
    ops = connect(url)
    try:
        done = path.with_suffix(".seeded")
        if not done.exists():
            t0 = time.perf_counter()
            seed(ops, runs=runs, tenants=2, active=0, random_seed=7)
            print(f"seeded {runs:,} runs in {time.perf_counter() - t0:.0f} s", flush=True)
            done.write_text(str(runs))
        for email in (EMAIL, *CLIENT_EMAILS):
            if ops.directory.get_user(email) is None:
                ops.directory.add_user("Bench User", email=email, tenants=ops.directory.tenants(), password=PASSWORD)
        return url
    finally:
        ops.close()


class Server(Measured, Served):
    "`opsux serve --auth basic` on a free port (the tests' `Served`), with its CPU time and a plain GET."
    checkout = ROOT                             # --checkout: the opsux to serve (e.g. a worktree of older code)
    def __init__(self, url: str, log: Path):
        super().__init__(log.parent, url, "--auth", "basic", "--page-limit", "1000/0.01", name=log.stem,
                         root=self.checkout)
        self.ps = psutil.Process(self.proc.pid)


class Wire:
    "Counts HTTP bytes (encoded, headers included) and requests of one page through the DevTools protocol."
    def __init__(self, context, page):
        self.cdp = context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.reset()
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.loadingFinished", lambda e: self._add(e.get("encodedDataLength", 0)))
        self.cdp.on("Network.loadingFailed", lambda e: None)
        page.on("request", lambda r: self.urls.append(r.url))

    def reset(self): self.bytes, self.requests, self.urls = 0, 0, []
    def _sent(self, e): self.requests += 1
    def _add(self, n): self.bytes += int(n)
    def outside(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).hostname not in ("127.0.0.1", None) and not u.startswith("data:")]


def sign_in(page, base):
    page.goto(base + "/login")
    page.fill("input[name=username]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url("**/operations**")
    page.wait_for_selector(READY["list"], state="visible", timeout=60000)


def load(page, wire, srv, url, kind, idle_rate, ready: str | None = None, live: str | None = None) -> dict:
    """One navigation to `url`: bytes, requests, seconds until the first rows are painted (`shown`: the first frame
    that has them, measured in the page) and until Playwright sees the live page (`live`; for a page without a
    first view, `ready` given and `live` not, when it sees `ready`), server CPU (idle rate subtracted)."""
    record_first_frame(page, ready or READY[kind])
    wire.reset()
    cpu0, t0 = srv.cpu(), time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(ready or READY[kind], state="visible", timeout=60000)
    if live or not ready: page.wait_for_selector(live or LIVE[kind], state="visible", timeout=60000)
    started = time.perf_counter() - t0
    page.wait_for_function("window.__first_frame !== null", timeout=60000)
    shown = page.evaluate("window.__first_frame") / 1000
    page.wait_for_load_state("load")
    time.sleep(0.5)                               # the websocket session settles (first patches, onload)
    spent = srv.cpu() - cpu0 - idle_rate * (time.perf_counter() - t0)
    return dict(bytes=wire.bytes, requests=wire.requests, shown=shown, live=started, cpu=max(spent, 0.0),
                outside=wire.outside())


def get_cpu(srv, path: str, cookies: str) -> float:
    "Server CPU of the HTML GET alone."
    cpu0 = srv.cpu()
    status, _ = srv.get(path, cookies)
    assert status == 200, (path, status)
    return srv.cpu() - cpu0


def settle(srv, quiet: float = 0.05, timeout: float = 90.0):
    "Wait until the server spends under `quiet` CPU-seconds in each of two 1 s windows (first start on a new DB)."
    end, calm = time.monotonic() + timeout, 0
    while calm < 2 and time.monotonic() < end:
        c0 = srv.cpu(); time.sleep(1.0)
        calm = calm + 1 if srv.cpu() - c0 < quiet else 0


def idle(srv, seconds: float = 3.0) -> float:
    settle(srv)
    c0 = srv.cpu(); time.sleep(seconds)
    return (srv.cpu() - c0) / seconds


def signed_in(browser, srv) -> tuple[dict, str, str]:
    "Sign in once: (the context's storage state, its cookies as a Cookie header, the first listed run's id)."
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}); pg = ctx.new_page()
    sign_in(pg, srv.base)
    run_id = pg.locator("table.ox-runs tbody tr").first.get_attribute("data-run-id")
    storage = ctx.storage_state(); ctx.close()
    return storage, "; ".join(f"{c['name']}={c['value']}" for c in storage["cookies"]), run_id


def bench(url: str, runs: int, loads: int, tmp: Path) -> dict:
    from playwright.sync_api import sync_playwright
    srv = Server(url, tmp / f"serve-{runs}.log")
    out = {k: {"cold": [], "warm": [], "get": []} for k in READY}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            storage, cookies, run_id = signed_in(browser, srv)
            urls = {"list": srv.base + "/operations", "detail": f"{srv.base}/operations/run?id={run_id}",
                    "login": srv.base + "/login"}
            time.sleep(2); rate = idle(srv)
            for _ in range(loads):
                for kind, u in urls.items():
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900},
                                              storage_state=None if kind == "login" else storage)
                    pg = ctx.new_page(); wire = Wire(ctx, pg)
                    out[kind]["cold"].append(load(pg, wire, srv, u, kind, rate))
                    out[kind]["warm"].append(load(pg, wire, srv, u, kind, rate))
                    ctx.close()
                    time.sleep(0.5)                 # the closed sessions are cleaned up before the next load
                    path = urlsplit(u).path + (f"?{urlsplit(u).query}" if urlsplit(u).query else "")
                    out[kind]["get"].append(get_cpu(srv, path, "" if kind == "login" else cookies))
            browser.close()
        out["idle_cpu_rate"] = rate
        out["rss_mb"] = srv.ps.memory_info().rss / 2**20
    finally:
        srv.stop()
    return out


def med(xs): return statistics.median(xs) if xs else float("nan")


def report(runs: int, r: dict):
    print(f"\n== {runs:,} runs (median of {len(r['list']['cold'])} loads; idle server "
          f"{r['idle_cpu_rate'] * 100:.1f}% CPU, RSS {r['rss_mb']:.0f} MB) ==")
    print(f"{'page':7} {'cold KB':>8} {'req':>4} {'warm KB':>8} {'req':>4} {'painted cold s':>14} {'warm s':>7}"
          f" {'live cold s':>11} {'warm s':>7} {'CPU/load s':>10} {'GET CPU s':>9}  outside")
    for kind in READY:
        c, w = r[kind]["cold"], r[kind]["warm"]
        outside = sorted({u for x in c + w for u in x["outside"]})
        print(f"{kind:7} {med([x['bytes'] for x in c]) / 1000:8.0f} {med([x['requests'] for x in c]):4.0f}"
              f" {med([x['bytes'] for x in w]) / 1000:8.0f} {med([x['requests'] for x in w]):4.0f}"
              f" {med([x['shown'] for x in c]):14.2f} {med([x['shown'] for x in w]):7.2f}"
              f" {med([x['live'] for x in c]):11.2f} {med([x['live'] for x in w]):7.2f}"
              f" {med([x['cpu'] for x in c + w]):10.3f} {med(r[kind]['get']):9.3f}  "
              f"{len(outside)}{' e.g. ' + outside[0][:70] if outside else ''}")
    print("targets: cold <= 600 KB, warm <= 60 KB, server CPU <= 0.1 s per load")


# ---- --compare rq: the same pages of RQ Dashboard (bench/rq_dashboard.py), alternating with opsux's -------------

PAGES = ("list", "detail", "failed")
RQ_READY = {"list": "table#jobs tbody tr[data-role=job]", "detail": "#job-data .col-6",
            "failed": "table#jobs tbody tr[data-role=job]"}


def page_and_document(path: str):
    """One load of an opsux page the way a browser makes it, without the browser: the page GET, then its websocket
    and the whole document (`PULL-DOC`, then `document_ready`, as BokehJS sends it), then the socket closed."""
    import asyncio
    from security_support import TOKEN, BokehSocket
    def step(srv, cookies: str) -> bool:
        status, body = srv.get(path, cookies)
        found = TOKEN.search(body.decode("utf-8", "replace")) if status == 200 else None
        if found is None: return False
        jar = dict(kv.split("=", 1) for kv in cookies.split("; ") if "=" in kv)
        async def document():
            ws = await BokehSocket.open(srv.base, path, found.group(1), cookies=jar)
            try: await ws.pull_doc()
            finally: ws.close()
        asyncio.run(document())
        return True
    return step


def client_cookies(srv, n: int) -> list[str]:
    "Cookie headers of `n` people signed in to opsux (`CLIENT_EMAILS`), for `hammer`'s clients."
    from security_support import Client
    out = []
    for email in CLIENT_EMAILS[:n]:
        c = Client(srv.base); c.sign_in(email, PASSWORD)
        out.append("; ".join(f"{k}={v}" for k, v in c.cookies.items()))
    return out


def hammer(srv, loads: list[list], cookies: str | list[str], clients: int, seconds: float) -> dict:
    """`clients` threads doing loads for `seconds` (each load: its steps in turn, a path for a plain GET or a
    `step(srv, cookies)` such as `page_and_document`; client n sends `cookies[n]` when given a list): latencies,
    errors, CPU. A failed load counts as an error, never ends its client."""
    import threading
    lat, errors, end = [], [], time.monotonic() + seconds
    def client(n):
        i = n
        while time.monotonic() < end:
            t0, ok = time.perf_counter(), True
            mine = cookies[n % len(cookies)] if isinstance(cookies, list) else cookies
            for step in loads[i % len(loads)]:
                try: ok = (step(srv, mine) if callable(step) else srv.get(step, mine)[0] == 200) and ok
                except Exception: ok = False
            (lat if ok else errors).append(time.perf_counter() - t0)
            i += 1
    cpu0, t0 = srv.cpu(), time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    return dict(lat=lat, errors=len(errors), seconds=time.perf_counter() - t0, cpu=srv.cpu() - cpu0)


def _merge(parts: list[dict]) -> dict:
    lat = sorted(x for p in parts for x in p["lat"])
    secs, n = sum(p["seconds"] for p in parts), len(lat)
    q = lambda f: lat[min(n - 1, int(f * n))] if n else float("nan")
    return dict(rate=n / secs, p50=q(0.5), p95=q(0.95), errors=sum(p["errors"] for p in parts),
                cpu=sum(p["cpu"] for p in parts) / max(n, 1))


def bench_compare(url: str, runs: int, loads: int, tmp: Path, per_page: int = 25, clients: int = 20,
                  seconds: float = 30.0) -> dict:
    "opsux and RQ Dashboard on `runs` runs / jobs, their list, detail and failed pages loaded in turn."
    from playwright.sync_api import sync_playwright
    import rq_dashboard as rqd
    srv = Server(url, tmp / f"serve-{runs}.log")
    side = None
    out = {s: {k: {"cold": [], "warm": [], "get": []} for k in PAGES} for s in ("opsux", "rq")}
    try:
        side = rqd.Side(tmp, runs)
        q = side.queue
        job_id = side.first_job_id("finished")
        rq_urls = {"list": side.base + rqd.jobs_path(q, "finished", per_page),
                   "detail": side.base + rqd.job_path(job_id),
                   "failed": side.base + rqd.jobs_path(q, "failed", per_page)}
        rq_data = {"list": rqd.jobs_json_path(q, "finished", per_page), "detail": rqd.job_json_path(job_id),
                   "failed": rqd.jobs_json_path(q, "failed", per_page)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            storage, cookies, run_id = signed_in(browser, srv)
            ox_urls = {"list": srv.base + "/operations", "detail": f"{srv.base}/operations/run?id={run_id}",
                       "failed": srv.base + "/operations?status=failed"}
            time.sleep(2)
            rate = {"opsux": idle(srv), "rq": idle(side)}
            d0 = side.dash_cpu(); time.sleep(2); dash_rate = (side.dash_cpu() - d0) / 2
            for i in range(loads):
                for kind in PAGES:
                    for who in (("opsux", "rq") if i % 2 == 0 else ("rq", "opsux")):   # A/B, then B/A
                        s_ = srv if who == "opsux" else side
                        u = (ox_urls if who == "opsux" else rq_urls)[kind]
                        page_ = "list" if kind == "failed" else kind
                        ready = READY[page_] if who == "opsux" else RQ_READY[kind]
                        live = LIVE[page_] if who == "opsux" else None
                        ctx = browser.new_context(viewport={"width": 1400, "height": 900},
                                                  storage_state=storage if who == "opsux" else None)
                        pg = ctx.new_page(); wire = Wire(ctx, pg)
                        for phase in ("cold", "warm"):
                            dc, t0 = side.dash_cpu(), time.perf_counter()
                            r = load(pg, wire, s_, u, kind, rate[who], ready, live)
                            if who == "rq":
                                r["cpu_dash"] = max(side.dash_cpu() - dc - dash_rate * (time.perf_counter() - t0), 0)
                            out[who][kind][phase].append(r)
                        ctx.close()
                        time.sleep(0.5)             # the closed sessions are cleaned up before the next load
                        sp = urlsplit(u); path = sp.path + (f"?{sp.query}" if sp.query else "")
                        if who == "opsux": out[who][kind]["get"].append(get_cpu(srv, path, cookies))
                        else: out[who][kind]["get"].append(get_cpu(side, path, "") + get_cpu(side, rq_data[kind], ""))
            browser.close()
        out["opsux"]["rss_mb"] = srv.ps.memory_info().rss / 2**20
        out["rq"]["rss_mb"], out["rq"]["redis_rss_mb"] = side.rss_mb()
        out["opsux"]["idle"], out["rq"]["idle"] = rate["opsux"], rate["rq"]
        out["rq"]["per_queue"], out["rq"]["queue"] = side.counts, q
        if clients and seconds > 0:
            ox_load = [[page_and_document("/operations")]]      # the page, its websocket and document
            people = client_cookies(srv, clients)
            rq_load = [[rqd.jobs_path(q, "finished", per_page), rq_data["list"]]]
            parts = {"opsux": [], "rq": []}
            for half in range(2):                   # opsux, RQ, opsux, RQ: each half the time
                parts["opsux"].append(hammer(srv, ox_load, people, clients, seconds / 2))
                time.sleep(2)
                parts["rq"].append(hammer(side, rq_load, "", clients, seconds / 2))
                time.sleep(2)
            for who in parts: out[who]["clients"] = _merge(parts[who])
            out["clients"] = clients
        out["opsux"]["rss_after_mb"] = srv.ps.memory_info().rss / 2**20
        out["rq"]["rss_after_mb"] = sum(side.rss_mb())
    finally:
        srv.stop()
        if side is not None: side.stop()
    return out


def report_compare(runs: int, r: dict, per_page: int):
    o, q = r["opsux"], r["rq"]
    n = len(o["list"]["cold"])
    print(f"\n== {runs:,} runs (opsux) vs {runs:,} jobs (RQ Dashboard): median of {n} loads each, alternating; "
          f"RQ queue {q['queue']!r}: {q['per_queue'][q['queue']]['finished']:,} finished, "
          f"{q['per_queue'][q['queue']]['failed']:,} failed; {per_page} rows a page ==")
    print(f"idle CPU: opsux {o['idle'] * 100:.1f}%, RQ Dashboard+Redis {q['idle'] * 100:.1f}%")
    print(f"{'page':7} {'figure':30} {'opsux':>9} {'RQ Dash':>9} {'opsux/RQ':>9}")
    ratios = {}
    def row(page, name, a, b, fmt="9.3f", key=None):
        ratio = a / b if b else float("inf") if a else float("nan")
        if key: ratios[(page, key)] = ratio
        print(f"{page:7} {name:30} {a:{fmt}} {b:{fmt}} {ratio:9.2f}")
    for kind in PAGES:
        oc, ow, qc, qw = o[kind]["cold"], o[kind]["warm"], q[kind]["cold"], q[kind]["warm"]
        row(kind, "first row painted cold s", med([x["shown"] for x in oc]), med([x["shown"] for x in qc]), key="cold")
        row(kind, "first row painted warm s", med([x["shown"] for x in ow]), med([x["shown"] for x in qw]), key="warm")
        row(kind, "live page cold s", med([x["live"] for x in oc]), med([x["live"] for x in qc]))
        row(kind, "live page warm s", med([x["live"] for x in ow]), med([x["live"] for x in qw]))
        row(kind, "cold KB", med([x["bytes"] for x in oc]) / 1000, med([x["bytes"] for x in qc]) / 1000, "9.0f")
        row(kind, "cold requests", med([x["requests"] for x in oc]), med([x["requests"] for x in qc]), "9.0f")
        row(kind, "warm KB", med([x["bytes"] for x in ow]) / 1000, med([x["bytes"] for x in qw]) / 1000, "9.1f")
        row(kind, "warm requests", med([x["requests"] for x in ow]), med([x["requests"] for x in qw]), "9.0f")
        row(kind, "server CPU/load s (RQ: +Redis)", med([x["cpu"] for x in oc + ow]),
            med([x["cpu"] for x in qc + qw]), key="cpu")
        row(kind, "server CPU/load s (RQ: dash only)", med([x["cpu"] for x in oc + ow]),
            med([x["cpu_dash"] for x in qc + qw]))
        row(kind, "GET CPU s (RQ: page+JSON)", med(o[kind]["get"]), med(q[kind]["get"]))
        outside = sorted({u for x in oc + ow + qc + qw for u in x["outside"]})
        if outside: print(f"{kind:7} requests outside 127.0.0.1: {len(outside)}, e.g. {outside[0][:70]}")
    row("all", "RSS MB after loads (RQ: +Redis)", o["rss_mb"], q["rss_mb"] + q["redis_rss_mb"], "9.0f")
    row("all", "RSS MB after loads (RQ: dash only)", o["rss_mb"], q["rss_mb"], "9.0f")
    if "clients" in r:
        oc, qc = o["clients"], q["clients"]
        c = r["clients"]
        row("list", f"{c} clients: loads/s", oc["rate"], qc["rate"], "9.1f")
        row("list", f"{c} clients: p50 s", oc["p50"], qc["p50"])
        row("list", f"{c} clients: p95 s", oc["p95"], qc["p95"])
        row("list", f"{c} clients: CPU s/load (+Redis)", oc["cpu"], qc["cpu"])
        print(f"{c} clients: errors opsux {oc['errors']}, RQ {qc['errors']}; RSS MB after: "
              f"opsux {o['rss_after_mb']:.0f}, RQ+Redis {q['rss_after_mb']:.0f}")
    for key, name, limit in (("cold", "first row cold", 1.0), ("warm", "first row warm", 0.5),
                             ("cpu", "server CPU per load", 1.0)):
        got = ", ".join(f"{k} {ratios[(k, key)]:.2f}x {'ok' if ratios[(k, key)] <= limit else 'MISSED'}"
                        for k in PAGES)
        print(f"target {name} <= {limit:.1f}x RQ Dashboard: {got}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=None, help="sizes (default 100000,1000000; with --compare 10000,100000)")
    ap.add_argument("--loads", type=int, default=None, help="loads per page (default 5; with --compare 7)")
    ap.add_argument("--dir", default="/tmp/opsux-pageload")
    ap.add_argument("--compare", choices=["rq"], help="also load RQ Dashboard's pages, alternating, and compare")
    ap.add_argument("--per-page", type=int, default=25, help="RQ Dashboard rows a page (opsux shows 25)")
    ap.add_argument("--clients", type=int, default=20, help="concurrent plain-HTTP clients (0: skip)")
    ap.add_argument("--client-seconds", type=float, default=30.0, help="seconds of client load per side")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="serve the opsux of this checkout (before/after)")
    a = ap.parse_args()
    Server.checkout = a.checkout.resolve()
    tmp = Path(a.dir); tmp.mkdir(parents=True, exist_ok=True)
    sizes = a.runs or ("10000,100000" if a.compare else "100000,1000000")
    loads = a.loads or (7 if a.compare else 5)
    for runs in [int(x) for x in sizes.split(",")]:
        url = prepare(tmp / f"runs-{runs}.sqlite", runs)
        if a.compare:
            report_compare(runs, bench_compare(url, runs, loads, tmp, a.per_page, a.clients, a.client_seconds),
                           a.per_page)
        else:
            report(runs, bench(url, runs, loads, tmp))


if __name__ == "__main__":
    main()
