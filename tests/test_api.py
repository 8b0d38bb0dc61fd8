"""The JSON API, the downloads and /metrics against a real `opsux serve` on SQLite and PostgreSQL: tokens (missing,
unknown and revoked → 401), tenant scope (another tenant's run → 404), keyset paging (every scoped row exactly once),
strict filters (400 with one line), CSV/JSON downloads equal to the SQL (by token and by the signed-in cookie), and
`/metrics` parsed with prometheus_client's own parser, behind its token."""
import csv, io, json, subprocess, sys
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select

import pgserver
from security_support import Client, Served

from opsux.rules.status import normalize
from opsux.store.models import Notification, OperationRun
from opsux.store.ops import connect

ALICE, BOB = ("alice@contoso.test", "alice-long-password-1"), ("bob@fabrikam.test", "bob-long-password-2")
METRICS_TOKEN = "metrics-" + "m" * 40
TYPES = ("inventory.sync", "policy.sync", "backup_set.add_policies")
STATES = [("queued", "pending"), ("running", "pending"), ("completed", "succeeded"), ("completed", "failed"),
          ("completed", "partially_succeeded"), ("cancelled", "cancelled"), ("FAILED ", "pending"), ("mystery", "x")]
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _rows(tenant, n, user, offset):
    "n runs of `tenant` with every kind of status, spread over days, durations 0–119 s."
    out = []
    for i in range(n):
        status, outcome = STATES[(i + offset) % len(STATES)]
        created = T0 + timedelta(hours=3 * i + offset)
        done = status in ("completed", "cancelled", "FAILED ")
        out.append(dict(tenant_id=tenant, user_id=user, type=TYPES[i % 3], status=status, outcome=outcome,
                        initiator_name=["Alice Archer", "=HYPERLINK(\"http://x\")", "Ops bot"][i % 3],
                        created_at=created, updated_at=created,
                        started_at=created + timedelta(seconds=1) if status != "queued" else None,
                        completed_at=created + timedelta(seconds=1 + i % 120) if done else None,
                        summary_counts={"total": i, "processed": i}, failure_summary=[{"code": "graph.503", "message": "x"}] if i % 5 == 0 else [],
                        context={"n": i}))
    return out


def build(url: str) -> dict:
    "Alice in Contoso and Northwind, Bob in Fabrikam; 1,900 runs; notifications; tokens (one of them revoked)."
    ops = connect(url)
    try:
        d = ops.directory
        contoso, northwind, fabrikam = d.add_tenant("Contoso"), d.add_tenant("Northwind"), d.add_tenant("Fabrikam")
        alice = d.add_user("Alice Archer", email=ALICE[0], tenants=[contoso, northwind], password=ALICE[1])
        bob = d.add_user("Bob Baker", email=BOB[0], tenants=[fabrikam], password=BOB[1])
        with ops.writer.begin() as con:
            for tenant, n, user, off in ((contoso, 1200, alice, 0), (fabrikam, 400, bob, 3), (northwind, 300, alice, 5)):
                con.execute(insert(OperationRun), _rows(tenant.id, n, user.id, off))
            ids = {t: con.execute(select(OperationRun.id).where(OperationRun.tenant_id == t.id)
                                  .order_by(OperationRun.id).limit(3)).scalars().all() for t in (contoso, fabrikam)}
            notes = [(alice, ids[contoso][0]), (alice, ids[contoso][1]), (alice, ids[fabrikam][0]), (bob, ids[fabrikam][1])]
            con.execute(insert(Notification), [dict(user_id=u.id, run_id=r, data={"title": f"run {r}"}, created_at=T0)
                                               for u, r in notes])
        alice_token, bob_token = ops.tokens.create(alice, "tests")[1], ops.tokens.create(bob)[1]
        revoked, revoked_token = ops.tokens.create(alice, "old")
        ops.tokens.revoke(revoked.id)
        return dict(alice=alice.id, bob=bob.id, alice_tenants=(contoso.id, northwind.id), fabrikam=fabrikam.id,
                    alice_token=alice_token, bob_token=bob_token, revoked_token=revoked_token,
                    contoso_run=ids[contoso][0], fabrikam_run=ids[fabrikam][0])
    finally: ops.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, tmp_path_factory):
    "A served world: (url, facts, server)."
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite": url, admin = f"sqlite:///{tmp / 'api.sqlite'}", None
    else:
        admin = request.getfixturevalue("pg_url")
        url = pgserver.fresh_database(admin)
    facts = build(url)
    server = Served(tmp, url, "--auth", "basic", "--metrics-token", METRICS_TOKEN)
    yield url, facts, server
    server.stop()
    if admin:
        try: pgserver.drop_database(admin, url)
        except Exception: pass


def get(server, path, token=None, client=None):
    c = client or Client(server.base)
    status, headers, body = c.get(path, headers={"Authorization": f"Bearer {token}"} if token else None)
    return status, headers, body


def sql_runs(url, tenants):
    "Every run of `tenants`, newest first, straight from the table."
    ops = connect(url)
    try:
        with ops.reader.connect() as con:
            q = select(*OperationRun.__table__.c).where(OperationRun.tenant_id.in_(tenants)).order_by(OperationRun.id.desc())
            return [r._mapping for r in con.execute(q)]
    finally: ops.close()


def test_missing_unknown_and_revoked_tokens_are_refused(api):
    url, f, server = api
    for token in (None, f["revoked_token"], "opsux_" + "A" * 43, "not-a-token"):
        status, headers, body = get(server, "/api/runs", token)
        assert status == 401, (token, status, body)
        assert headers["WWW-Authenticate"].startswith("Bearer") and "\n" not in json.loads(body)["error"]
    status, _, _ = Client(server.base).get("/api/runs", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert status == 401
    assert get(server, "/api/runs", f["alice_token"])[0] == 200


def test_a_token_revoked_with_the_cli_stops_working_at_once(api, tmp_path):
    url, f, server = api
    cli = [sys.executable, "-m", "opsux.cli", "tokens"]
    made = subprocess.run([*cli, "create", ALICE[0], "--name", "short-lived", "--db", url], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert get(server, "/api/runs?limit=1", token)[0] == 200
    listed = subprocess.run([*cli, "list", ALICE[0], "--db", url], capture_output=True, text=True, timeout=120)
    line = next(l for l in listed.stdout.splitlines() if "short-lived" in l)
    assert token not in listed.stdout and "active" in line and "last used never" not in line
    revoked = subprocess.run([*cli, "revoke", line.split("\t")[0], "--db", url], capture_output=True, text=True, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    assert get(server, "/api/runs?limit=1", token)[0] == 401
    missing = subprocess.run([*cli, "revoke", "999999", "--db", url], capture_output=True, text=True, timeout=120)
    assert (missing.returncode, missing.stderr.strip()) == (2, "opsux: no API token 999999")


def test_another_tenants_run_is_404(api):
    url, f, server = api
    status, _, body = get(server, f"/api/runs/{f['fabrikam_run']}", f["alice_token"])
    assert status == 404 and "no run" in json.loads(body)["error"]
    status, _, body = get(server, f"/api/runs/{f['fabrikam_run']}", f["bob_token"])
    assert status == 200 and json.loads(body)["tenant_id"] == f["fabrikam"]
    status, _, body = get(server, f"/api/runs/{f['contoso_run']}", f["alice_token"])
    assert status == 200 and json.loads(body)["id"] == f["contoso_run"]
    for bad in ("999999999", "abc", "0", "-1", "9" * 30):
        assert get(server, f"/api/runs/{bad}", f["alice_token"])[0] == 404, bad


def test_a_membership_ended_ends_the_tokens_scope_at_the_next_request(api):
    "The API reads the user's tenants with the token, in one statement, on every request: never a stale scope."
    url, f, server = api
    contoso, northwind = f["alice_tenants"]
    tenants = lambda: {r["tenant_id"] for r in json.loads(get(server, "/api/runs?limit=500", f["alice_token"])[2])["items"]}
    assert tenants() == {contoso, northwind}
    ops = connect(url)
    try:
        assert ops.directory.remove_membership(f["alice"], northwind)
        try:
            assert tenants() == {contoso}
            assert get(server, f"/api/runs/{sql_runs(url, [northwind])[0]['id']}", f["alice_token"])[0] == 404
            assert ops.directory.remove_membership(f["alice"], contoso)
            assert get(server, "/api/runs", f["alice_token"])[2].startswith('{"items": [],')   # in no tenant: nothing
        finally:
            ops.directory.add_membership(f["alice"], northwind); ops.directory.add_membership(f["alice"], contoso)
    finally: ops.close()
    assert tenants() == {contoso, northwind}


def walk(server, token, query):
    "Every page of /api/runs?query, following `next`; the ids in order."
    ids, path, pages = [], f"/api/runs?{query}", 0
    while path:
        status, _, body = get(server, path, token)
        assert status == 200, body
        page = json.loads(body)
        ids += [r["id"] for r in page["items"]]
        path, pages = page["next"], pages + 1
        assert pages < 100
    return ids, pages


def test_paging_returns_every_scoped_row_exactly_once(api):
    url, f, server = api
    rows = sql_runs(url, f["alice_tenants"])
    ids, pages = walk(server, f["alice_token"], "limit=97")
    assert ids == [r["id"] for r in rows] and len(ids) == 1500 and pages == 16
    failed = [r["id"] for r in rows if normalize(r["status"], r["outcome"]).value == "failed"
              and r["type"] == "policy.sync" and r["created_at"] >= datetime(2026, 3, 20, tzinfo=timezone.utc)]
    ids, _ = walk(server, f["alice_token"], "status=failed&type=policy.sync&since=2026-03-20&limit=7")
    assert ids == failed and len(failed) > 7
    coded = [r["id"] for r in rows if normalize(r["status"], r["outcome"]).value in ("failed", "partial")
             and r["failure_summary"] and r["failure_summary"][0]["code"] == "graph.503"]
    ids, _ = walk(server, f["alice_token"], "code=graph.503&limit=50")         # a failure hotspot's filter
    assert ids == coded and len(coded) > 50
    bob_ids, _ = walk(server, f["bob_token"], "limit=500")
    assert bob_ids == [r["id"] for r in sql_runs(url, [f["fabrikam"]])]


def test_bad_filters_are_400_with_one_line(api):
    url, f, server = api
    for query, says in (("status=finished", "Status 'finished'"), ("since=last-week", "not a date"),
                        ("limit=100000", "limit"), ("after=page2", "after"), ("tenant=1", "unknown parameter"),
                        ("run_id=x", "Run id"), ("status=failed&status=queued", "more than once")):
        status, headers, body = get(server, f"/api/runs?{query}", f["alice_token"])
        error = json.loads(body)["error"]
        assert status == 400 and says in error and "\n" not in error and "Traceback" not in body, (query, body)
    assert get(server, "/api/runs.csv?status=finished", f["alice_token"])[0] == 400
    assert get(server, "/api/notifications?unread=maybe", f["alice_token"])[0] == 400


def expected_csv(rows):
    "CSV rows computed here from the table's values, independently of opsux.ui.api."
    def text(v): return "'" + v if v and v[0] in "=+-@" else (v or "")
    def iso(v): return v.isoformat() if v else ""
    return [[str(r["id"]), str(r["tenant_id"]), text(r["type"]), normalize(r["status"], r["outcome"]).value,
             text(r["status"]), text(r["outcome"]), text(r["initiator_name"]), str(r["user_id"]), str(r["attempt"]),
             iso(r["created_at"]), iso(r["started_at"]), iso(r["completed_at"]), iso(r["updated_at"]),
             json.dumps(r["summary_counts"], sort_keys=True)] for r in rows]


def test_csv_download_equals_the_sql(api):
    url, f, server = api
    status, headers, body = get(server, "/api/runs.csv", f["alice_token"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="opsux-runs.csv"' == headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(body)))
    assert table[0][:4] == ["id", "tenant_id", "type", "status"]
    assert table[1:] == expected_csv(sql_runs(url, f["alice_tenants"]))
    assert any(row[6] == "'=HYPERLINK(\"http://x\")" for row in table[1:])       # inert in a spreadsheet
    status, _, body = get(server, "/api/runs.csv?status=partial&until=2026-03-30", f["alice_token"])
    want = [r for r in sql_runs(url, f["alice_tenants"]) if normalize(r["status"], r["outcome"]).value == "partial"
            and r["created_at"] < datetime(2026, 3, 31, tzinfo=timezone.utc)]
    assert list(csv.reader(io.StringIO(body)))[1:] == expected_csv(want) and want


def test_json_download_holds_every_scoped_run(api):
    url, f, server = api
    status, headers, body = get(server, "/api/runs.json?type=inventory.sync", f["bob_token"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    runs = json.loads(body)
    assert [r["id"] for r in runs] == [r["id"] for r in sql_runs(url, [f["fabrikam"]]) if r["type"] == "inventory.sync"]
    assert {r["tenant_id"] for r in runs} == {f["fabrikam"]}
    status, _, body = get(server, "/api/runs.json?type=none.such", f["bob_token"])
    assert status == 200 and json.loads(body) == []


def test_download_with_the_signed_in_cookie(api):
    url, f, server = api
    browser = Client(server.base)
    assert browser.get("/api/runs.csv")[0] == 401
    status, _, _ = browser.sign_in(*ALICE)
    assert status == 302
    status, _, body = browser.get("/api/runs.csv?status=failed")
    want = [r for r in sql_runs(url, f["alice_tenants"]) if normalize(r["status"], r["outcome"]).value == "failed"]
    assert status == 200 and list(csv.reader(io.StringIO(body)))[1:] == expected_csv(want)
    assert browser.get("/api/runs")[0] == 401              # the JSON API itself wants a token
    browser.sign_out()
    assert browser.get("/api/runs.csv")[0] == 401


def test_notifications_are_the_users_own_and_visible(api):
    url, f, server = api
    status, _, body = get(server, "/api/notifications", f["alice_token"])
    items = json.loads(body)["items"]
    assert status == 200 and [n["run_id"] for n in items] == [f["contoso_run"] + 1, f["contoso_run"]]
    page = json.loads(get(server, "/api/notifications?limit=1", f["alice_token"])[2])
    rest = json.loads(get(server, f"/api/notifications?after={page['next_after']}", f["alice_token"])[2])
    assert [n["id"] for n in page["items"] + rest["items"]] == [n["id"] for n in items] and rest["next_after"] is None


def test_api_routes_keep_the_host_check_and_security_headers(api):
    url, f, server = api
    status, _, _ = get(server, "/api/runs", f["alice_token"], client=Client(server.base, headers={"Host": "evil.test"}))
    assert status == 421
    status, headers, _ = get(server, "/api/runs?limit=1", f["alice_token"])
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


def test_metrics_need_their_token_and_match_the_sql(api):
    url, f, server = api
    assert get(server, "/metrics")[0] == 401
    assert get(server, "/metrics", f["alice_token"])[0] == 401      # a user's API token is not the metrics token
    status, headers, body = get(server, "/metrics", METRICS_TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    fams = {m.name: m for m in text_string_to_metric_families(body)}
    rows = sql_runs(url, [*f["alice_tenants"], f["fabrikam"]])
    want: dict = {}
    for r in rows:
        key = (r["type"], normalize(r["status"], r["outcome"]).value)
        want[key] = want.get(key, 0) + 1
    assert {(s.labels["type"], s.labels["status"]): s.value for s in fams["opsux_runs"].samples} == want
    active = {s.labels["type"]: s.value for s in fams["opsux_active_runs"].samples}
    assert active == {t: sum(n for (tt, s), n in want.items() if tt == t and s in ("queued", "running")) for t in TYPES}
    ages = {s.labels["type"]: s.value for s in fams["opsux_queue_age_seconds"].samples}
    oldest = min(r["created_at"] for r in rows if r["status"] == "queued" and r["type"] == TYPES[0])
    assert abs(ages[TYPES[0]] - (datetime.now(timezone.utc) - oldest).total_seconds()) < 120
    hist = [s for s in fams["opsux_run_duration_seconds"].samples if s.labels.get("type") == TYPES[1]]
    finished = [r for r in rows if r["type"] == TYPES[1] and r["completed_at"] and r["started_at"]]
    secs = [(r["completed_at"] - r["started_at"]).total_seconds() for r in finished]
    by = {(s.name, s.labels.get("le")): s.value for s in hist}
    assert by[("opsux_run_duration_seconds_count", None)] == len(finished) == by[("opsux_run_duration_seconds_bucket", "+Inf")]
    assert by[("opsux_run_duration_seconds_bucket", "60.0")] == sum(1 for s in secs if s <= 60)
    assert abs(by[("opsux_run_duration_seconds_sum", None)] - sum(secs)) < 0.01 * len(secs)


def test_with_auth_none_downloads_act_as_the_as_user(api, tmp_path):
    url, f, _ = api
    server = Served(tmp_path, url, "--auth", "none", "--as", ALICE[0], name="none")
    try:
        status, _, body = Client(server.base).get("/api/runs.csv?type=policy.sync")
        want = [r for r in sql_runs(url, f["alice_tenants"]) if r["type"] == "policy.sync"]
        assert status == 200 and list(csv.reader(io.StringIO(body)))[1:] == expected_csv(want)
        assert Client(server.base).get("/api/runs")[0] == 401          # the JSON API still wants a token
        assert get(server, "/metrics")[0] == 200                       # no --metrics-token: open
    finally: server.stop()


def test_pages_come_back_after_postgresql_ends_the_servers_connections(api):
    """Unfiltered pages are read through psycopg itself (`_driver_rows`). When PostgreSQL ends the server's
    connections (a restart, a failover, an administrator's `pg_terminate_backend`), a request answers 503 with one
    line of JSON, or already 200; from the first 200 on, every answer is 200 with the same page: no dead
    connection is left in the pool to fail a later request."""
    url, f, server = api
    if not url.startswith("postgresql"): pytest.skip("PostgreSQL ends connections; a SQLite file has none")
    import psycopg
    token, c = f["alice_token"], Client(server.base)
    first = json.loads(get(server, "/api/runs?limit=7", token, c)[2])
    paths = ["/api/runs?limit=7", f"/api/runs?limit=7&after={first['next_after']}", "/api/runs?limit=7&status=failed"]
    before = {}
    for _ in range(12):                                   # prepared, with their plans, on the pooled connections
        for p in paths: before[p] = get(server, p, token, c)[2]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 2
    answers = [(p, *get(server, p, token, c)[::2]) for _ in range(6) for p in paths]
    ok = next(i for i, (_, status, _) in enumerate(answers) if status == 200)
    assert ok <= 3, answers[:ok]
    for p, status, body in answers[:ok]:
        assert status == 503 and json.loads(body) == {"error": "the database is unavailable; try again shortly"}
    assert all(status == 200 and body == before[p] for p, status, body in answers[ok:]), answers[ok:]

def test_postgresql_writes_the_same_page_json_as_run_json(ops):
    """On PostgreSQL a page's JSON is written by the database (`run_page_json`): on every page, with filters and
    keyset paging, it is exactly `run_json` of `Viewer.runs`' runs: odd status words, NULL and fractional
    timestamps (trailing zeros, one microsecond, none), user text with quotes, backslashes and non-ASCII, nested
    JSON. On SQLite pages go through `run_json` (`sql_pages` is false)."""
    from opsux.ui.api import run_json, run_page_json, sql_pages
    d = ops.directory
    tenant, other = d.add_tenant("Contoso"), d.add_tenant("Fabrikam")
    user = d.add_user("Ada", email="ada@contoso.test", tenants=[tenant])
    states = STATES + [("  Completed ", "SUCCEEDED"), ("completed", "Succeeded"), ("running", "")]
    texts = ['Ada "the first" Lovelace', "back\\slash\nline", "Zoë 🚀 <b>x</b>", None]
    micro = (0, 1, 120_000, 999_999, 5)
    rows = []
    for i in range(260):
        status, outcome = states[i % len(states)]
        at = T0 + timedelta(minutes=7 * i, microseconds=micro[i % len(micro)])
        rows.append(dict(tenant_id=(tenant if i % 9 else other).id, user_id=user.id, type=TYPES[i % 3], status=status,
                         outcome=outcome, initiator_name=texts[i % len(texts)], created_at=at, updated_at=at,
                         started_at=at + timedelta(seconds=1, microseconds=i) if i % 4 else None,
                         completed_at=at + timedelta(seconds=i) if i % 3 == 0 else None,
                         cancel_requested_at=at if i % 11 == 0 else None, attempt=1 + i % 3,
                         summary_counts={"total": i, "processed": i // 2, "note": texts[i % 3]},
                         failure_summary=[{"code": "graph.503", "message": texts[i % 3]}] if i % 5 == 0 else [],
                         context={"n": i, "nested": {"list": [1, 2.5, None, True], "s": texts[(i + 1) % 3]}}))
    with ops.writer.begin() as con:
        con.execute(insert(OperationRun), rows)
    viewer = ops.viewer(user)
    assert sql_pages(viewer) is ops.is_postgres
    if not ops.is_postgres: return
    checked = 0
    for kw in ({}, {"status": ["failed"]}, {"status": ["unknown", "running"]}, {"type": ["policy.sync"]},
               {"initiator": texts[0]}, {"since": T0 + timedelta(hours=5)}):
        after = None
        while True:
            query = {**kw, "after": after} if after else dict(kw)
            items, next_after = run_page_json(viewer, 23, query)
            page = viewer.runs(limit=23, **query)
            assert json.loads(items) == [run_json(r) for r in page.items], kw
            assert next_after == page.next_after
            checked += len(page.items)
            if next_after is None: break
            after = next_after
    assert checked > 260


def test_a_page_read_by_the_driver_fails_as_sqlalchemy_would_and_recovers(ops):
    """`_driver_rows` reads a kept page through psycopg itself. When its connection is gone, the error raised is
    SQLAlchemy's `OperationalError` (what the API answers with 503), not psycopg's, and the next read, on a new
    connection, gives the page again."""
    from sqlalchemy.exc import OperationalError
    from opsux.ui.api import run_page_json
    if not ops.is_postgres: pytest.skip("the driver path is PostgreSQL's")
    d = ops.directory
    tenant = d.add_tenant("Contoso")
    user = d.add_user("Ada", email="ada@contoso.test", tenants=[tenant])
    with ops.writer.begin() as con:
        con.execute(insert(OperationRun), _rows(tenant.id, 30, user.id, 0))
    viewer = ops.viewer(user)
    page = run_page_json(viewer, 10, {})
    with ops.engine.connect() as con:               # every other connection to this database, the reader's among them
        assert con.exec_driver_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar() >= 1
    with pytest.raises(OperationalError):
        run_page_json(viewer, 10, {})
    assert run_page_json(viewer, 10, {}) == page
