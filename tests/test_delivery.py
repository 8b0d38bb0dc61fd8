"""Delivery of terminal notifications through the outbox: signed webhooks with retries, mail over SMTP, tenant and
user scoping, nothing lost while a receiver is down, and `complete()` never waiting for a receiver."""
import hashlib, hmac, json, os, socket, subprocess, sys, threading, time
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, text

import opsux
from opsux.store.delivery import Channels, Deliverer, SmtpSettings
from opsux.store.tables import notification_outbox as outbox, notifications, utcnow


class Receiver:
    "A local webhook receiver: answers `fail` times 500 (or sleeps `delay`), then 200; keeps what it got."
    def __init__(self, fail: int = 0, port: int = 0, delay: float = 0.0):
        self.fail, self.delay, self.got, self.lock = fail, delay, [], threading.Lock()
        me = self
        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with me.lock:
                    me.got.append((dict(self.headers), body))
                    code = 500 if me.fail > 0 else 200
                    me.fail -= 1
                if me.delay: time.sleep(me.delay)
                self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
            def log_message(self, *a): pass
        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
    def close(self): self.server.shutdown(); self.server.server_close()
    def __enter__(self): return self
    def __exit__(self, *e): self.close()


def free_port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def finish(w, tenant, user, outcome=None, fail=None):
    o = w.ops
    r = o.runs.enqueue(tenant, "inventory.sync", user=user)
    o.runs.start(r)
    return o.runs.fail(r, fail) if fail else o.runs.complete(r, outcome)


def rows(ops):
    with ops.reader.connect() as con:
        return [r._asdict() for r in con.execute(select(outbox).order_by(outbox.c.id))]


def test_fails_twice_then_delivered_once_signed(world):
    w, t0 = world, utcnow()
    with Receiver(fail=2) as rx:
        ch = Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        run = finish(w, w.contoso, w.ada)
        d = Deliverer(w.ops, base_url="https://ops.example")
        assert d.pump(now=t0) == 1
        assert d.deliver_due(now=t0)["retry"] == 1
        assert d.deliver_due(now=t0 + timedelta(seconds=9))["retry"] == 0        # backoff: due after 10 s
        assert d.deliver_due(now=t0 + timedelta(seconds=10))["retry"] == 1
        assert d.deliver_due(now=t0 + timedelta(seconds=29))["delivered"] == 0   # then after 20 s more
        assert d.deliver_due(now=t0 + timedelta(seconds=30))["delivered"] == 1
        assert d.deliver_due(now=t0 + timedelta(days=1)) == dict(delivered=0, retry=0, dead=0, deferred=0)
        assert d.pump(now=t0 + timedelta(days=1)) == 0
        [row] = rows(w.ops)
        assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
        assert row["channel_id"] == ch.id and row["delivered_at"] is not None
        assert len(rx.got) == 3
        bodies = {body for _, body in rx.got}
        assert len(bodies) == 1  # every attempt sends the same bytes
        for headers, body in rx.got:
            want = "sha256=" + hmac.new(ch.secret.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Opsux-Signature"], want)
            assert headers["X-Opsux-Delivery"] == str(row["id"])
        p = json.loads(bodies.pop())
        assert p["run_id"] == run.id and p["tenant"] == "Contoso" and p["tenant_id"] == w.contoso.id
        assert p["type"] == "inventory.sync" and p["outcome"] == run.outcome == "succeeded"
        assert p["url"] == f"https://ops.example/operations/run?id={run.id}"
        assert p["title"] and p["message"] is not None and p["event"] == "operation_run.terminal"


def test_receiver_down_keeps_rows_pending_and_delivers_later(world):
    w, t0, port = world, utcnow(), free_port()
    Channels(w.ops).add("webhook", f"http://127.0.0.1:{port}/hook", tenant=w.contoso)
    runs = [finish(w, w.contoso, u) for u in (w.ada, w.cy, w.ada)]
    d = Deliverer(w.ops, timeout=1)
    assert d.pump(now=t0) == 3
    for i in range(4):  # a round tries one row and puts the others back untried
        n = d.deliver_due(now=t0 + timedelta(hours=i))
        assert (n["retry"], n["deferred"], n["delivered"], n["dead"]) == (1, 2, 0, 0), n
    got = rows(w.ops)
    assert [r["status"] for r in got] == ["pending"] * 3
    assert len({r["next_attempt_at"] for r in got}) == 1  # the untried rows wait as long as the tried one
    assert sum(r["attempts"] for r in got) == 4 and all("refused" in (r["last_error"] or "refused").lower() for r in got)
    with Receiver(port=port) as rx:
        assert d.deliver_due(now=t0 + timedelta(hours=5))["delivered"] == 3
        assert sorted(json.loads(b)["run_id"] for _, b in rx.got) == sorted(r.id for r in runs)
    assert [r["status"] for r in rows(w.ops)] == ["delivered"] * 3


def test_channels_get_only_their_tenant_or_user(world):
    w = world
    c = Channels(w.ops)
    with Receiver() as rx:
        fab = c.add("webhook", rx.url + "?fabrikam", tenant=w.fabrikam)
        bob = c.add("webhook", rx.url + "?bob", user=w.bob)
        ada = c.add("webhook", rx.url + "?ada", user=w.ada)
        cy_fab = c.add("webhook", rx.url + "?cy-fabrikam", user=w.cy, tenant=w.fabrikam)
        off = c.add("webhook", rx.url + "?off", tenant=w.contoso)
        c.set_enabled(off, False)
        r1 = finish(w, w.contoso, w.ada)   # -> ada only
        r2 = finish(w, w.contoso, w.cy)    # -> nobody (cy's channel is for Fabrikam)
        r3 = finish(w, w.fabrikam, w.cy)   # -> fabrikam, cy_fab
        d = Deliverer(w.ops)
        assert d.pump() == 3
        assert d.deliver_due()["delivered"] == 3
        seen = sorted(json.loads(b)["run_id"] for _, b in rx.got)
    with w.ops.reader.connect() as con:
        pairs = sorted((r.channel_id, r.run_id) for r in con.execute(
            select(outbox.c.channel_id, notifications.c.run_id).join(notifications,
                                                                    notifications.c.id == outbox.c.notification_id)))
    assert pairs == sorted([(ada.id, r1.id), (fab.id, r3.id), (cy_fab.id, r3.id)])
    assert bob.id not in {p[0] for p in pairs} and off.id not in {p[0] for p in pairs}
    assert r2.id not in {p[1] for p in pairs}
    assert seen == sorted([r1.id, r3.id, r3.id])


def test_dead_after_max_attempts(world):
    w, t0 = world, utcnow()
    with Receiver(fail=99) as rx:
        Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        finish(w, w.contoso, w.ada, fail="boom")
        d = Deliverer(w.ops, max_attempts=3, backoff=1)
        d.pump(now=t0)
        outcomes = [d.deliver_due(now=t0 + timedelta(hours=i)) for i in range(5)]
    assert [o["retry"] for o in outcomes] == [1, 1, 0, 0, 0] and [o["dead"] for o in outcomes] == [0, 0, 1, 0, 0]
    [row] = rows(w.ops)
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 3, "HTTP 500 Internal Server Error")
    assert Channels(w.ops).counts()[row["channel_id"]] == {"pending": 0, "delivered": 0, "dead": 1}


def test_smtp_delivery(world):
    from aiosmtpd.controller import Controller
    got = []
    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content)); return "250 OK"
    ctl = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        w = world
        Channels(w.ops).add("smtp", "oncall@contoso.test", tenant=w.contoso)
        run = finish(w, w.contoso, w.ada, fail="Graph API said no")
        d = Deliverer(w.ops, base_url="https://ops.example",
                      smtp=SmtpSettings(host="127.0.0.1", port=ctl.port, sender="opsux@ops.example"))
        assert d.pump() == 1
        assert d.deliver_due()["delivered"] == 1
    finally: ctl.stop()
    [(sender, rcpts, raw)] = got
    assert sender == "opsux@ops.example" and rcpts == ["oncall@contoso.test"]
    m = message_from_bytes(raw, policy=email_policy)
    assert m["To"] == "oncall@contoso.test" and m["X-Opsux-Run"] == str(run.id)
    assert "failed" in m["Subject"].lower() and "(Contoso)" in m["Subject"]
    body = m.get_content()
    assert "Graph API said no" in body and "Outcome: failed" in body
    assert f"View run: https://ops.example/operations/run?id={run.id}" in body
    assert rows(w.ops)[0]["status"] == "delivered"


def test_smtp_unconfigured_stays_pending(world):
    w = world
    Channels(w.ops).add("smtp", "oncall@contoso.test", tenant=w.contoso)
    finish(w, w.contoso, w.ada)
    d = Deliverer(w.ops, smtp=SmtpSettings(host=None))
    d.pump(); assert d.deliver_due()["retry"] == 1
    [row] = rows(w.ops)
    assert row["status"] == "pending" and "OPSUX_SMTP_HOST" in row["last_error"]


def test_complete_does_not_wait_for_receivers(world):
    "A receiver that takes 3 s per request: complete() stays fast and writes no outbox row; pump/deliver_due send."
    w = world
    with Receiver(delay=3) as rx:
        Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        Channels(w.ops).add("webhook", rx.url, user=w.ada)
        times = []
        for _ in range(5):
            r = w.ops.runs.enqueue(w.contoso, "inventory.sync", user=w.ada)
            w.ops.runs.start(r)
            t = time.perf_counter(); w.ops.runs.complete(r); times.append(time.perf_counter() - t)
        assert max(times) < 1.0, times
        assert rows(w.ops) == [] and rx.got == []
        d = Deliverer(w.ops, timeout=1)
        assert d.pump() == 10
        t = time.perf_counter(); n = d.deliver_due(); took = time.perf_counter() - t
        assert n["retry"] == 2 and n["deferred"] == 8  # one timeout per channel, not per row
        assert took < 5, took
    assert all("timed out" in r["last_error"] for r in rows(w.ops) if r["attempts"])


def test_rows_left_when_half_the_lease_is_gone_go_back(world):
    "A slow receiver: rows claimed together but not sent within half the lease are put back, due at once."
    w = world
    with Receiver(delay=0.7) as rx:
        Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        for _ in range(4): finish(w, w.contoso, w.ada)
        d = Deliverer(w.ops, lease=2.0)
        d.pump()
        n = d.deliver_due()
        assert n["delivered"] == 2 and n["deferred"] == 2, n  # 0.7 s each: the third starts past 1 s
        assert d.deliver_due()["delivered"] == 2
    got = rows(w.ops)
    assert {r["status"] for r in got} == {"delivered"} and {r["attempts"] for r in got} == {1}
    assert len(rx.got) == 4


def test_concurrent_pumps_and_deliverers_send_each_once(world):
    w = world
    with Receiver() as rx:
        Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        runs = [finish(w, w.contoso, w.ada) for _ in range(12)]
        handles = [opsux.connect(w.ops.engine.url.render_as_string(hide_password=False)) for _ in range(3)]
        errors, barrier = [], threading.Barrier(len(handles))
        def go(o):
            try:
                barrier.wait()
                d = Deliverer(o, batch=4)
                for _ in range(6): d.pump(); d.deliver_due()
            except Exception as e: errors.append(e)
        try:
            threads = [threading.Thread(target=go, args=(o,)) for o in handles]
            for t in threads: t.start()
            for t in threads: t.join(120)
        finally:
            for o in handles: o.close()
        assert not errors, errors
        ids = [json.loads(b)["run_id"] for _, b in rx.got]
    assert sorted(ids) == sorted(r.id for r in runs)  # each delivered exactly once
    got = rows(w.ops)
    assert len(got) == 12 and {r["status"] for r in got} == {"delivered"} and {r["attempts"] for r in got} == {1}


def test_a_late_commit_below_the_cursor_is_not_missed(world, db_url):
    "PostgreSQL: a notification whose id is lower than one already pumped, committed afterwards, still goes out."
    if not db_url.startswith("postgresql"): pytest.skip("SQLite serializes writers: no commit can come late")
    w = world
    with Receiver() as rx:
        Channels(w.ops).add("webhook", rx.url, tenant=w.contoso)
        slow = w.ops.runs.enqueue(w.contoso, "inventory.sync", user=w.ada)
        late = w.ops.engine.connect()
        tx = late.begin()
        late.execute(notifications.insert().values(user_id=w.ada.id, type="operation_run.terminal", run_id=slow.id,
                                                    data={"title": "late"}, created_at=utcnow()))  # id taken, not committed
        fast = finish(w, w.contoso, w.ada)
        d = Deliverer(w.ops)
        assert d.pump(now=utcnow() + timedelta(seconds=1)) == 1  # the fast one; the cursor stays below the young ids
        tx.commit(); late.close()
        assert d.pump() == 1
        assert d.deliver_due(now=utcnow() + timedelta(seconds=2))["delivered"] == 2
        assert sorted(json.loads(b)["run_id"] for _, b in rx.got) == sorted([slow.id, fast.id])


def test_a_paused_channel_holds_its_pending_rows(world):
    w = world
    with Receiver() as rx:
        c = Channels(w.ops)
        ch = c.add("webhook", rx.url, tenant=w.contoso)
        finish(w, w.contoso, w.ada)
        d = Deliverer(w.ops)
        assert d.pump() == 1
        c.set_enabled(ch, False)
        finish(w, w.contoso, w.ada)
        assert d.pump() == 0 and d.deliver_due()["delivered"] == 0 and rx.got == []
        c.set_enabled(ch, True)
        assert d.deliver_due()["delivered"] == 1 and len(rx.got) == 1


def test_removing_a_channel_drops_its_rows(world):
    w = world
    c = Channels(w.ops)
    ch = c.add("webhook", "http://127.0.0.1:9/hook", tenant=w.contoso)
    finish(w, w.contoso, w.ada)
    Deliverer(w.ops).pump()
    assert len(rows(w.ops)) == 1
    assert c.remove(ch) and rows(w.ops) == [] and c.get(ch) is None and not c.remove(ch)


def cli(*args, db, stdin=None):
    return subprocess.run([sys.executable, "-m", "opsux.cli", *args, "--db", db], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_cli_channels_and_deliver_once(world, db_url):
    w = world
    with Receiver() as rx:
        r = cli("channels", "add", "--tenant", "Contoso", "--webhook", rx.url, "--secret-stdin", db=db_url,
                stdin="s3cret-signing-key\n")
        assert r.returncode == 0, r.stderr
        assert "added channel" in r.stdout and "s3cret" not in r.stdout + r.stderr
        r = cli("channels", "add", "--user", "bob@fabrikam.test", "--email", "bob@fabrikam.test", db=db_url)
        assert r.returncode == 0 and "mail for user" in r.stdout, r.stderr
        finish(w, w.contoso, w.ada)
        r = cli("deliver", "--once", "--base-url", "https://ops.example", db=db_url)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "opsux: queued 1, delivered 1, to retry 0, dead 0"
        [(headers, body)] = rx.got
        assert headers["X-Opsux-Signature"] == "sha256=" + hmac.new(b"s3cret-signing-key", body, hashlib.sha256).hexdigest()
        r = cli("channels", "list", db=db_url)
        lines = r.stdout.strip().split("\n")
        assert lines[0].split("\t")[3:] == ["tenant Contoso", "enabled", "0 pending", "1 delivered", "0 dead"], lines
        assert "user bob@fabrikam.test" in lines[1] and "s3cret" not in r.stdout
        assert cli("channels", "remove", "1", db=db_url).returncode == 0
        r = cli("channels", "add", "--tenant", "Nowhere", "--webhook", rx.url, db=db_url)
        assert r.returncode == 2 and "no tenant" in r.stderr
        r = cli("channels", "add", "--tenant", "Contoso", "--webhook", "ftp://x", db=db_url)
        assert r.returncode == 2 and "http" in r.stderr
