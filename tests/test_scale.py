"""Scale-out on PostgreSQL: every server process receives every change.

`opsux serve --num-procs 2` (one listening socket, forked processes) and two separate `opsux serve` processes on
one database each get dashboard sessions — real Bokeh/Panel sessions opened like a browser opens them (GET the page,
then the Bokeh websocket; see bench/serve.py) — and a worker's commit must reach the progress widget of every one of
them through LISTEN/NOTIFY. psutil tells which server process holds each session's websocket, so the test knows the
sessions really are spread over the processes. A forked server must not share a database connection between its
processes (a connection opened before the fork and then used by two processes corrupts both).
"""
from __future__ import annotations

import sys, time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import pgserver  # noqa: E402
from serve import Server, SessionSwarm  # noqa: E402


@pytest.fixture(scope="module")
def pg_db(tmp_path_factory):
    "A fresh PostgreSQL database with one tenant, an operator and a little history."
    try: admin = pgserver.ensure_postgres()
    except pgserver.PostgresUnavailable as e:
        import os
        if os.environ.get("OPSUX_REQUIRE_POSTGRES") == "1": raise
        pytest.skip(f"PostgreSQL unavailable: {e}")
    url = pgserver.fresh_database(admin)
    from opsux.store.ops import connect
    from opsux.store.seed import seed
    ops = connect(url)
    seed(ops, runs=300, tenants=1, users_per_tenant=2)
    op = sorted(ops.directory.users(), key=lambda u: u.id)[0]
    tenant = ops.viewer(op).tenants()[0]
    yield dict(url=url, ops=ops, operator=op, tenant=tenant, tmp=tmp_path_factory.mktemp("scale"))
    ops.close()
    try: pgserver.drop_database(admin, url)
    except Exception: pass


@pytest.fixture
def swarm():
    s = SessionSwarm()
    yield s
    s.close()


def holder_pids(server: Server, sessions) -> dict[int, int]:
    "Session number → pid of the server process that holds its websocket (parent or a forked child)."
    procs = [psutil.Process(server.proc.pid)] + psutil.Process(server.proc.pid).children(recursive=True)
    out = {}
    for p in procs:
        for c in p.net_connections(kind="tcp"):
            for s in sessions:
                if c.raddr and c.raddr.port == s.local_port and c.laddr.port == server.port: out[s.n] = p.pid
    return out


def db_sockets(server: Server, pg_port: int) -> dict[int, set]:
    "Server pid → local addresses of its TCP connections to PostgreSQL."
    procs = [psutil.Process(server.proc.pid)] + psutil.Process(server.proc.pid).children(recursive=True)
    return {p.pid: {c.laddr for c in p.net_connections(kind="tcp") if c.raddr and c.raddr.port == pg_port}
            for p in procs}


def push_reaches_all(db, swarm, sessions, steps: int = 3) -> list[float]:
    "A worker (this process) advances a run of the operator; every session must show each new percent."
    ops = db["ops"]
    run = ops.runs.enqueue(db["tenant"], "inventory.sync", user=db["operator"], context={"source": "test_scale"})
    ops.runs.start(run); ops.runs.set_total(run, 10)
    swarm.watched.add(run.id)
    latencies = []
    try:
        for i in range(1, steps + 1):
            ops.runs.advance(run, processed=1, succeeded=1)
            committed = time.time()
            seen = swarm.wait_seen(run.id, i * 10, sessions=sessions, timeout=15)
            missing = [s.n for s, t in zip(sessions, seen) if t is None]
            assert not missing, f"sessions {missing} never showed {i * 10}% of run {run.id}"
            latencies += [t - committed for t in seen]
    finally:
        ops.runs.complete(run)
        swarm.watched.discard(run.id)
    return latencies


def test_num_procs_2_every_process_gets_every_change(pg_db, swarm):
    srv = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], num_procs=2, cli=True)
    try:
        children = psutil.Process(srv.proc.pid).children()
        assert len(children) == 2, f"expected 2 forked server processes, got {len(children)}"
        sessions, where = [], {}
        for _ in range(12):                  # the kernel spreads connections; open until both processes hold some
            sessions += swarm.open(srv.base, 2)
            where = holder_pids(srv, sessions)
            if len(set(where.values())) >= 2: break
        assert len(set(where.values())) == 2, f"sessions all landed in one process: {where}"
        assert set(where.values()) <= {c.pid for c in children}
        push_reaches_all(pg_db, swarm, sessions)
        from sqlalchemy.engine import make_url
        socks = db_sockets(srv, make_url(pg_db["url"]).port)
        kids = [socks[c.pid] for c in children]
        shared = kids[0] & kids[1]
        assert not shared, f"forked processes share database connections opened before the fork: {shared}"
        assert not socks[srv.proc.pid], f"the supervising parent keeps database connections: {socks[srv.proc.pid]}"
        # the parent only supervises after the fork, so any thread it has was started before the fork (and would
        # be missing, mid-lock, in the children)
        assert psutil.Process(srv.proc.pid).num_threads() == 1, "a thread was started before the fork"
        assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]
    finally:
        srv.stop()


def test_two_servers_on_one_database_both_get_every_change(pg_db, swarm):
    a = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], cli=True)
    b = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], cli=True)
    try:
        on_a, on_b = swarm.open(a.base, 2), swarm.open(b.base, 2)
        assert set(holder_pids(a, on_a).values()) == {a.proc.pid}
        assert set(holder_pids(b, on_b).values()) == {b.proc.pid}
        lat = push_reaches_all(pg_db, swarm, on_a + on_b)
        assert max(lat) < 5, lat
        for s in (a, b): assert "Traceback" not in s.log_text(), s.log_text()[-3000:]
    finally:
        a.stop(); b.stop()


def test_session_count_does_not_multiply_database_reads(pg_db, swarm):
    "With 1 and then 20 sessions on one process, the statements a push costs the server stay (nearly) the same."
    srv = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"])
    try:
        def cost(sessions):
            time.sleep(1.5)                  # page builds and their first reads are done
            before = srv.statements()
            push_reaches_all(pg_db, swarm, sessions, steps=4)
            time.sleep(1.5)                  # a straggling refresh would still be counted
            return srv.statements() - before
        one = cost(swarm.open(srv.base, 1))
        twenty = cost(swarm.sessions + swarm.open(srv.base, 19))
        assert twenty <= 2 * one + 4, f"statements per 4 pushes: {one} with 1 session, {twenty} with 20"
        collector = srv.gc_settings()         # serve() settled the collector of the process it took over
        assert collector["threshold"][0] == 100_000 and collector["frozen"] > 0, collector
    finally:
        srv.stop()


def test_websocket_origin_of_a_reverse_proxy(pg_db, swarm):
    """A page served through a proxy's public name: its websocket is refused by default, accepted with
    `opsux serve --allow-websocket-origin` or BOKEH_ALLOW_WS_ORIGIN."""
    public = "https://ops.example.com"
    plain = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], cli=True)
    by_env = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], cli=True,
                    env={"BOKEH_ALLOW_WS_ORIGIN": "ops.example.com"})
    by_flag = Server(pg_db["url"], pg_db["operator"].email, pg_db["tmp"], cli=True,
                     args=["--allow-websocket-origin", "ops.example.com", "--use-xheaders", "--trusted-proxy", "127.0.0.1"])
    try:
        from tornado.httpclient import HTTPClientError
        with pytest.raises(HTTPClientError) as refused:
            swarm.open(plain.base, 1, origin=public, timeout=60)
        assert refused.value.code == 403
        for proxied in (by_env, by_flag):
            sessions = swarm.open(proxied.base, 1, origin=public)
            push_reaches_all(pg_db, swarm, sessions, steps=1)
    finally:
        plain.stop(); by_env.stop(); by_flag.stop()
