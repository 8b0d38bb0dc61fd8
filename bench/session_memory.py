"""Memory per dashboard session, and whether it is given back when the tabs close (issue 17 item 5).

One `opsux serve` (SQLite, `--as` one user in every tenant of a seeded history) and real Bokeh sessions opened the
way a browser opens them (bench/serve.py's `SessionSwarm`: GET /operations, the websocket, PULL-DOC,
document_ready). Each cycle opens `--sessions` sessions, reads the server's RSS, closes every websocket, waits
until Bokeh has discarded the sessions (it checks every 17 s for sessions unused for 15 s; Panel then collects
garbage) and reads the RSS again. Printed: RSS idle, per session while open, after the close of each cycle, and
the growth from the first cycle's close to the last (what a leak would show). Target: ≤ 0.5 MB per session, and
memory given back when the tabs close.

    python bench/session_memory.py [--runs 100000] [--sessions 200] [--cycles 3] [--wait 45]
"""
from __future__ import annotations

import argparse, sys, tempfile, time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from pageload import EMAIL, prepare  # noqa: E402  (a seeded SQLite history with a user in every tenant)
from serve import Server, SessionSwarm  # noqa: E402  (the server wrapper and real Bokeh sessions)


def rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def settle(proc: psutil.Process, seconds: float) -> float:
    "Wait `seconds`, then until the RSS stops moving (two readings 2 s apart within 1 MB); the last reading."
    time.sleep(seconds)
    last = rss_mb(proc)
    for _ in range(10):
        time.sleep(2); now = rss_mb(proc)
        if abs(now - last) < 1: return now
        last = now
    return last


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--wait", type=float, default=45.0, help="seconds after the close before reading the RSS")
    ap.add_argument("--dir", default="/tmp/opsux-pageload")
    a = ap.parse_args(argv)
    tmp = Path(a.dir); tmp.mkdir(parents=True, exist_ok=True)
    url = prepare(tmp / f"runs-{a.runs}.sqlite", a.runs)
    server = Server(url, EMAIL, Path(tempfile.mkdtemp(prefix="opsux-bench-mem-")))
    proc = psutil.Process(server.proc.pid)
    rows = []
    try:
        warm = SessionSwarm(); warm.open(server.base, 5); warm.close()        # first builds: imports, caches
        idle = settle(proc, a.wait)
        print(f"idle RSS after 5 warm-up sessions: {idle:.1f} MB", flush=True)
        for cycle in range(1, a.cycles + 1):
            swarm, t0 = SessionSwarm(), time.perf_counter()
            swarm.open(server.base, a.sessions)
            opened = time.perf_counter() - t0
            time.sleep(3)
            open_rss = rss_mb(proc)
            swarm.close()
            closed_rss = settle(proc, a.wait)
            rows.append((cycle, open_rss, closed_rss))
            print(f"cycle {cycle}: {a.sessions} sessions opened in {opened:.0f} s; RSS open {open_rss:.1f} MB "
                  f"({(open_rss - idle) / a.sessions * 1024:.0f} KB per session), after the close {closed_rss:.1f} MB",
                  flush=True)
    finally:
        server.stop()
    per = [(o - idle) / a.sessions for _, o, _ in rows]
    print(f"\n== {a.sessions} sessions × {a.cycles} cycles, {a.runs:,} runs (SQLite) ==")
    print(f"RSS idle {idle:.1f} MB; per open session {min(per) * 1024:.0f}–{max(per) * 1024:.0f} KB (target ≤ 512 KB)")
    first, last = rows[0][2], rows[-1][2]
    print(f"RSS after each close: {', '.join(f'{c:.1f}' for *_, c in rows)} MB; given back per cycle "
          f"{', '.join(f'{(o - c) / (o - idle) * 100:.0f} %' for _, o, c in rows)} of what the sessions took; "
          f"first → last close {last - first:+.1f} MB ({(last - first) / max(1, a.sessions * (len(rows) - 1)) * 1024:+.1f} KB "
          f"per session opened after the first cycle)")


if __name__ == "__main__":
    main()
