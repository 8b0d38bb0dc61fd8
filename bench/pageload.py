"""Page-load benchmark: what a browser downloads and what the server spends for each page of the dashboard.

One `opsux serve --auth basic` runs in a subprocess on a seeded SQLite database (100k and 1M runs by default;
seeded once into --dir and reused). The system Chromium (Playwright) opens the login page, signs in, then
opens the Operations list and a run's detail page, each `--loads` times:
- cold: a fresh browser context (empty cache) per load; warm: the same page again in the same context;
- bytes: what crossed the wire for HTTP (Chromium's `encodedDataLength`, headers included, from the DevTools
  protocol), requests made, and requests that left 127.0.0.1 (offline pages make none);
- first row visible: from navigation start until the list's first run row (detail: the run's facts; login:
  the sign-in button) is visible;
- server CPU per page load: the server process's user+system CPU from navigation start until the page is
  shown and its websocket session settled (0.5 s after), less what the idle server spends in that time;
  and the server CPU of the HTML GET alone (a plain HTTP client with the browser's cookies).

    python bench/pageload.py [--runs 100000,1000000] [--loads 5] [--dir /tmp/opsux-pageload]

Loopback only; every server it starts is stopped when it ends.
"""
from __future__ import annotations

import argparse, http.client, statistics, sys, time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the tests' own helpers)
from security_support import Served  # noqa: E402

EMAIL, PASSWORD = "bench@opsux.test", "bench-long-password-1"
READY = {"list": "table.ox-runs tbody tr", "detail": ".ox-detail .ox-facts, .ox-detail h2",
         "login": "#login-submit"}


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
        if ops.directory.get_user(EMAIL) is None:
            ops.directory.add_user("Bench User", email=EMAIL, tenants=ops.directory.tenants(), password=PASSWORD)
        return url
    finally:
        ops.close()


class Server(Served):
    "`opsux serve --auth basic` on a free port (the tests' `Served`), with its CPU time and a plain GET."
    def __init__(self, url: str, log: Path):
        super().__init__(log.parent, url, "--auth", "basic", "--page-limit", "1000/0.01", name=log.stem)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def get(self, path: str, cookies: str = "") -> tuple[int, bytes]:
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            con.request("GET", path, headers={"Cookie": cookies} if cookies else {})
            r = con.getresponse()
            return r.status, r.read()
        finally: con.close()


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


def load(page, wire, srv, url, kind, idle_rate) -> dict:
    "One navigation to `url`: bytes, requests, seconds to visible, server CPU (idle rate subtracted)."
    wire.reset()
    cpu0, t0 = srv.cpu(), time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(READY[kind], state="visible", timeout=60000)
    shown = time.perf_counter() - t0
    page.wait_for_load_state("load")
    time.sleep(0.5)                               # the websocket session settles (first patches, onload)
    spent = srv.cpu() - cpu0 - idle_rate * (time.perf_counter() - t0)
    return dict(bytes=wire.bytes, requests=wire.requests, shown=shown, cpu=max(spent, 0.0), outside=wire.outside())


def get_cpu(srv, path: str, cookies: str) -> float:
    "Server CPU of the HTML GET alone."
    cpu0 = srv.cpu()
    status, _ = srv.get(path, cookies)
    assert status == 200, (path, status)
    return srv.cpu() - cpu0


def idle(srv, seconds: float = 3.0) -> float:
    c0 = srv.cpu(); time.sleep(seconds)
    return (srv.cpu() - c0) / seconds


def bench(url: str, runs: int, loads: int, tmp: Path) -> dict:
    from playwright.sync_api import sync_playwright
    srv = Server(url, tmp / f"serve-{runs}.log")
    out = {k: {"cold": [], "warm": [], "get": []} for k in READY}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            ctx = browser.new_context(viewport={"width": 1400, "height": 900}); pg = ctx.new_page()
            sign_in(pg, srv.base)
            run_id = pg.locator("table.ox-runs tbody tr").first.get_attribute("data-run-id")
            storage = ctx.storage_state(); ctx.close()
            cookies = "; ".join(f"{c['name']}={c['value']}" for c in storage["cookies"])
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
    print(f"{'page':7} {'cold KB':>8} {'req':>4} {'warm KB':>8} {'req':>4} {'shown cold s':>12} {'warm s':>7}"
          f" {'CPU/load s':>10} {'GET CPU s':>9}  outside")
    for kind in READY:
        c, w = r[kind]["cold"], r[kind]["warm"]
        outside = sorted({u for x in c + w for u in x["outside"]})
        print(f"{kind:7} {med([x['bytes'] for x in c]) / 1000:8.0f} {med([x['requests'] for x in c]):4.0f}"
              f" {med([x['bytes'] for x in w]) / 1000:8.0f} {med([x['requests'] for x in w]):4.0f}"
              f" {med([x['shown'] for x in c]):12.2f} {med([x['shown'] for x in w]):7.2f}"
              f" {med([x['cpu'] for x in c + w]):10.3f} {med(r[kind]['get']):9.3f}  "
              f"{len(outside)}{' e.g. ' + outside[0][:70] if outside else ''}")
    print("targets: cold <= 600 KB, warm <= 60 KB, server CPU <= 0.1 s per load")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="100000,1000000")
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--dir", default="/tmp/opsux-pageload")
    a = ap.parse_args()
    tmp = Path(a.dir); tmp.mkdir(parents=True, exist_ok=True)
    for runs in [int(x) for x in a.runs.split(",")]:
        url = prepare(tmp / f"runs-{runs}.sqlite", runs)
        report(runs, bench(url, runs, a.loads, tmp))


if __name__ == "__main__":
    main()
