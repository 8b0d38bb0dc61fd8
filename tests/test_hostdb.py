"""opsux on a host application's database: a Laravel-shaped PostgreSQL schema read through the `laravel` preset by a
role that may only SELECT. List, detail, widget, filters, bcrypt sign-in, tenant scoping from the host's pivot, the
inbox off and on, `opsux doctor`, `serve` refusing a schema it cannot read — and nothing but SELECT reaches the
database."""
import os, re, subprocess, sys, time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

import opsux
from opsux.rules.status import UxStatus
from opsux.store.schema import SchemaError

from hostdb_support import add_notification, add_world, create_laravel, dsn, read_only_url
import pgserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def host(pg_url):
    "A Laravel-shaped database with the world in it: (admin URL, SELECT-only URL, world)."
    url = create_laravel(pg_url)
    world = add_world(url)
    yield url, read_only_url(url), world
    pgserver.drop_database(pg_url, url)


@pytest.fixture
def statements():
    "Every statement any engine sends while the test runs."
    seen = []
    def record(conn, cursor, statement, *a): seen.append(statement)
    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def only_selects(seen):
    return [s for s in seen if not re.match(r"\s*(SELECT|WITH|SHOW)\b", s, re.I)]


def test_preset_from_the_url_alone_lists_scopes_and_filters(host, statements):
    _, ro, w = host
    ops = opsux.connect(ro, read_only=True)
    try:
        assert ops.schema.name == "preset laravel" and ops.schema.problems == []
        ada = ops.viewer("ada@contoso.test")                    # stored as Ada@Contoso.test: email is any case
        assert ada.tenant_ids == (w["Contoso"],)
        contoso = [w["runs"][i] for i in (3, 2, 1, 0)]
        assert [r.id for r in ada.runs()] == contoso
        assert [r.id for r in ada.runs(limit=2)] == contoso[:2]
        assert [r.id for r in ada.runs(status="failed")] == [w["runs"][1]]
        assert [r.id for r in ada.runs(status=["queued", "running"])] == contoso[:2]
        assert [r.id for r in ada.runs(type="policy.sync")] == [w["runs"][1]]
        assert [r.id for r in ada.runs(initiator="Cy")] == [w["runs"][3]]
        since = datetime.now(timezone.utc) - timedelta(minutes=10)
        assert [r.id for r in ada.runs(since=since)] == contoso[:2]
        detail = ada.run(w["runs"][0])
        assert detail.summary_counts == {"total": 5, "processed": 5} and detail.created_at.tzinfo is not None
        assert [r.id for r in ada.active_runs()] == [w["runs"][2]]          # the widget: Ada's own
        assert [t.name for t in ada.tenants()] == ["Contoso"]
        assert ada.run(w["runs"][4]) is None                                 # Fabrikam's run: not visible
        bob = ops.viewer("bob@fabrikam.test")
        assert [r.id for r in bob.runs()] == [w["runs"][4]] and bob.run(w["runs"][0]) is None
        cy = ops.viewer("cy@both.test")
        assert len(cy.runs().items) == 5 and [r.id for r in cy.active_runs()] == [w["runs"][3]]
        assert [r.id for r in ops.viewer("cy@both.test", tenant=w["Fabrikam"]).runs()] == [w["runs"][4]]
        dee = ops.viewer("dee@nowhere.test")
        assert dee.no_membership and dee.runs().items == [] and dee.active_runs() == [] and dee.tenants() == []
        with pytest.raises(LookupError): ops.viewer("nobody@nowhere.test")
        assert ada.types() == ["inventory.sync", "policy.sync"] and ada.initiators() == ["Ada", "Cy"]
    finally: ops.close()
    assert statements and only_selects(statements) == []


def test_read_only_handles_cannot_write_even_as_a_privileged_role(host):
    url, _, _ = host
    from sqlalchemy import text
    ops = opsux.connect(url, read_only=True)
    try:
        for engine in (ops.engine, ops.reader):
            with pytest.raises(Exception, match="read-only transaction"):
                with engine.connect() as c: c.execute(text("insert into tenants (name) values ('x')"))
    finally: ops.close()


def test_scoping_is_in_sql(host, statements):
    _, ro, w = host
    ops = opsux.connect(ro, read_only=True)
    try:
        statements.clear()
        ops.viewer("ada@contoso.test").runs()
        listing = [s for s in statements if "FROM operation_runs" in s][-1]
        assert re.search(r"operation_runs\.tenant_id IN \(", listing), listing
    finally: ops.close()


def test_sign_in_with_the_hosts_bcrypt_hash(host):
    _, ro, w = host
    ops = opsux.connect(ro, read_only=True)
    try:
        d = ops.directory
        assert d.get_user("ada@contoso.test").password_hash.startswith("$2y$")
        assert d.verify_password("ada@contoso.test", "ada-secret").id == w["Ada"]
        assert d.verify_password("ADA@contoso.test", "ada-secret").id == w["Ada"]
        assert d.verify_password("ada@contoso.test", "wrong") is None
        assert d.verify_password("nobody@contoso.test", "ada-secret") is None
    finally: ops.close()


def test_argon2_hashes_sign_in_too(host):
    url, ro, w = host
    from argon2 import PasswordHasher
    import psycopg
    with psycopg.connect(dsn(url), autocommit=True) as con:
        con.execute("update users set password = %s where id = %s", (PasswordHasher().hash("argon-pw"), w["Bob"]))
    ops = opsux.connect(ro, read_only=True)
    try: assert ops.directory.verify_password("bob@fabrikam.test", "argon-pw").id == w["Bob"]
    finally: ops.close()


def test_inbox_reads_laravel_notifications(host, statements):
    url, ro, w = host
    ids = [add_notification(url, w["Ada"], f"Sync {i} finished", body=f"Run {i}", minutes_ago=10 - i,
                            url_=f"/admin/operation-runs/{i}", read=i == 0) for i in range(4)]
    add_notification(url, w["Bob"], "Bob's")
    add_notification(url, w["Ada"], "A tenant's, not Ada's", notifiable_type="App\\Models\\Tenant")
    ops = opsux.connect(ro, read_only=True)
    try:
        v = ops.viewer("ada@contoso.test")
        assert v.unread_count() == 3
        first = v.notifications(limit=2)
        assert [n.data["title"] for n in first] == ["Sync 3 finished", "Sync 2 finished"]
        assert first[0].data["url"] == "/admin/operation-runs/3" and first[0].data["body"] == "Run 3"
        older = v.notifications(limit=2, after=first[-1].id)
        assert [n.data["title"] for n in older] == ["Sync 1 finished", "Sync 0 finished"]
        assert older[-1].read_at is not None and len(v.notifications(unread_only=True)) == 3
        assert v.mark_all_read() == 0 and v.unread_count() == 3                   # read-only: nothing written
        from opsux.ui.viewmodels import notification_item
        item = notification_item(first[0])
        assert (item["title"], item["url"], item["status"]) == ("Sync 3 finished", "/admin/operation-runs/3", "success")
    finally: ops.close()
    assert only_selects(statements) == []


def test_inbox_off_queries_no_notifications(host, statements):
    url, ro, w = host
    add_notification(url, w["Ada"], "Not shown")
    ops = opsux.connect(ro, read_only=True, config={"preset": "laravel", "notifications": "none"})
    try:
        statements.clear()
        v = ops.viewer("ada@contoso.test")
        assert ops.schema.notifications is None
        assert v.notifications() == [] and v.unread_count() == 0
        assert not [s for s in statements if "notifications" in s]
    finally: ops.close()


def test_naive_timestamps_in_the_apps_time_zone(pg_url):
    url = create_laravel(pg_url)
    try:
        berlin = ZoneInfo("Europe/Berlin")
        w = add_world(url, tz=berlin)                        # the app writes Berlin wall time
        ro = read_only_url(url)
        for tz, off in (("Europe/Berlin", 0), ("UTC", None)):
            ops = opsux.connect(ro, read_only=True, config={"preset": "laravel", "timezone": tz})
            try:
                started = ops.viewer("ada@contoso.test").run(w["runs"][2]).started_at
                ago = (datetime.now(timezone.utc) - started).total_seconds()
                if off == 0: assert 100 <= ago <= 200, ago            # two minutes ago, as the app meant
                else: assert abs(ago - 120 + berlin.utcoffset(datetime.now()).total_seconds()) < 80, ago
            finally: ops.close()
        with pytest.raises(SchemaError, match="timezone = 'Mars/Olympus' is not a time zone"):
            opsux.connect(ro, read_only=True, config={"preset": "laravel", "timezone": "Mars/Olympus"})
    finally: pgserver.drop_database(pg_url, url)


def test_legacy_map_from_the_mapping_file(host, tmp_path):
    _, ro, _ = host
    cfg = tmp_path / "opsux.toml"
    cfg.write_text('preset = "laravel"\n[legacy]\n"completed/*" = "derive"\n"processing/*" = "running"\n')
    ops = opsux.connect(ro, read_only=True, config=str(cfg))
    try:
        from opsux.rules.presenter import OperationUxPresenter
        p = OperationUxPresenter(legacy=ops.schema.legacy)
        assert p.status_of("completed", None, {"total": 2, "processed": 2}, []) == UxStatus.succeeded
    finally: ops.close()
    cfg.write_text('preset = "laravel"\n[legacy]\n"completed/*" = "done-ish"\n')
    with pytest.raises(SchemaError, match=r"\[legacy\]"): opsux.connect(ro, read_only=True, config=str(cfg))


def test_views_map_like_tables(host):
    url, ro, w = host
    import psycopg
    with psycopg.connect(dsn(url), autocommit=True) as con:
        con.execute("create view team_runs as select id, tenant_id as team_id, user_id, type, status as state, "
                    "outcome, created_at, updated_at from operation_runs")
        con.execute("grant select on team_runs to laravel_ro")
    cfg = {"preset": "laravel", "runs": {"table": "team_runs", "columns": {"tenant_id": "team_id", "status": "state"}}}
    ops = opsux.connect(ro, read_only=True, config=cfg)
    try:
        assert ops.schema.runs.where == "team_runs"
        assert [r.id for r in ops.viewer("ada@contoso.test").runs()] == [w["runs"][i] for i in (3, 2, 1, 0)]
    finally: ops.close()


def cli(*args, env=None, timeout=120):
    r = subprocess.run([sys.executable, "-m", "opsux.cli", *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


def test_doctor_reports_the_mapping_and_the_indexes(host):
    url, ro, _ = host
    code, out, err = cli("doctor", "--db", ro)
    assert code == 0, out + err
    lines = out.splitlines()
    assert "with the mapping preset laravel" in lines[0] and "laravel_ro" in lines[0]
    assert "ok    users: users (id, name, email, password_hash=password)" in lines
    assert any(l.startswith("ok    notifications: notifications (") for l in lines)
    assert any("has no time zone: read as UTC wall time" in l for l in lines)
    wanted = [l.strip() for l in lines if l.strip().startswith("CREATE INDEX CONCURRENTLY")]
    assert ("CREATE INDEX CONCURRENTLY IF NOT EXISTS opsux_operation_runs_active_user ON operation_runs "
            "(user_id, id) WHERE lower(trim(status)) IN ('queued', 'running');") in wanted
    assert len(wanted) == 6 and any(l.startswith("time  list page ") for l in lines)
    import psycopg                                   # the statements run as printed, and doctor then sees them
    with psycopg.connect(dsn(url), autocommit=True) as con:
        for st in wanted: con.execute(st)
    code, out, _ = cli("doctor", "--db", ro)
    assert code == 0 and out.count("-- already there") == 6


def test_schema_problems_are_one_line_each_and_serve_refuses(host, tmp_path):
    url, ro, _ = host
    cfg = tmp_path / "opsux.toml"
    cfg.write_text('preset = "laravel"\n[runs.columns]\nstatus = "state"\n[users]\ntable = "people"\n')
    code, out, err = cli("doctor", "--db", ro, "--config", str(cfg))
    assert code == 1
    errors = [l for l in out.splitlines() if l.startswith("error ")]
    assert errors == [
        "error runs.status: operation_runs has no column 'state'; fix: set [runs.columns] status = \"<column>\" "
        "(columns: completed_at, context, created_at, failure_summary, id, initiator_name, outcome, started_at, "
        "status, summary_counts, tenant_id, type, updated_at, user_id)",
        errors[1]]
    assert errors[1].startswith("error users: no table or view people; fix: set [users] table = ")
    code, out, err = cli("serve", "--read-only", "--db", ro, "--config", str(cfg), "--as", "ada@contoso.test",
                         "--port", "1")
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines() == ["opsux: " + e[len("error "):] for e in errors]


def test_laravel_notifications_under_opsux_names_refuse_to_start_instead_of_reconnecting(host):
    _, ro, _ = host
    code, out, err = cli("serve", "--read-only", "--db", ro, "--config", "opsux", "--as", "ada@contoso.test")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("opsux: notifications.user_id: notifications has no column 'user_id'; fix: set "
                          "[notifications.columns] user_id = ")
    assert len(err.splitlines()) == 1


def test_missing_select_permission_is_one_line_with_the_grant(host):
    url, ro, _ = host
    import psycopg
    with psycopg.connect(dsn(url), autocommit=True) as con: con.execute("revoke select on tenant_user from laravel_ro")
    with pytest.raises(SchemaError) as e: opsux.connect(ro, read_only=True)
    assert e.value.problems == [e.value.problems[0]]
    assert e.value.problems[0].startswith("memberships: reading tenant_user fails: permission denied for table "
                                          "tenant_user; fix: GRANT SELECT ON tenant_user TO laravel_ro")


def test_a_host_mapping_is_refused_for_writing(host):
    url, _, _ = host
    with pytest.raises(SchemaError, match="open it read-only"):
        opsux.connect(url, config="laravel", migrate=False)


def test_serve_signs_in_with_the_hosts_bcrypt_password(host, tmp_path):
    _, ro, w = host
    import http.cookiejar, urllib.parse, urllib.request
    from support import free_port
    port = free_port()
    env = {**os.environ, "OPSUX_COOKIE_SECRET": "x" * 40, "OPSUX_HOME": str(tmp_path)}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--read-only", "--auth", "basic", "--db", ro,
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        jar = http.cookiejar.CookieJar()
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k): return None
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
        def call(path, data=None):
            try: r = opener.open(base + path, urllib.parse.urlencode(data).encode() if data else None, timeout=30)
            except urllib.error.HTTPError as e: r = e
            return r.status if hasattr(r, "status") else r.code, r.read().decode("utf-8", "replace")
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try: status, body = call("/login"); break
            except OSError:
                assert time.monotonic() < deadline; time.sleep(0.2)
        token = re.search(r'name="_csrf" value="([^"]+)"', body).group(1)
        status, _ = call("/login", {"username": "ada@contoso.test", "password": "wrong", "_csrf": token})
        assert status == 401
        status, _ = call("/login", {"username": "ada@contoso.test", "password": "ada-secret", "_csrf": token})
        assert status == 302
        status, body = call("/operations")
        assert status == 200 and "bokeh" in body.lower()
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()


def test_opsux_toml_in_the_working_directory_and_opsux_config(host, tmp_path, monkeypatch):
    _, ro, _ = host
    monkeypatch.chdir(tmp_path)
    (tmp_path / "opsux.toml").write_text('preset = "laravel"\nnotifications = "none"\n')
    ops = opsux.connect(ro, read_only=True)
    try: assert ops.schema.notifications is None and ops.schema.name.endswith("opsux.toml")
    finally: ops.close()
    monkeypatch.setenv("OPSUX_CONFIG", "laravel")                 # the environment wins over the file
    ops = opsux.connect(ro, read_only=True)
    try: assert ops.schema.name == "preset laravel" and ops.schema.notifications is not None
    finally: ops.close()
