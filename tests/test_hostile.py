"""Hostile input, unit level, on SQLite and PostgreSQL: stored markup, 10 MB payloads, unicode tricks, absurd times
and counts written straight into the rows; arbitrary list-filter values from the URL. Every case renders bounded,
escaped text or a clear message; nothing raises; the stored rows are unchanged afterwards."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select, text, update

from opsux.ui.pages import DashboardApp, DashboardSession
from opsux.ui.components import detail_html, notification_html, runs_table_html
from opsux.store.models import Notification, OperationRun
from opsux.rules.presenter import OperationUxPresenter
from opsux.rules.urls import OPERATIONS_PATH, RUN_PATH
from opsux.ui.viewmodels import (MAX_NAME, MAX_TEXT, InboxModel, ListFilters, OperationsListModel, RunDetailModel,
                              notification_item)

MARKUP = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'
SHORT = "<img src=x onerror=alert(1)>"          # fits status/outcome (VARCHAR(32) on PostgreSQL)
RTL, ZW = "\u202e", "\u200b"
MB10 = 10 * 1024 * 1024


def _rows(ops, ids):
    "The stored rows, as raw JSON-comparable dicts (what 'nothing is lost' is checked against)."
    c = OperationRun.__table__.c
    with ops.engine.connect() as con:
        return {r.id: dict(r._mapping) for r in con.execute(select(*c).where(c.id.in_(ids)).order_by(c.id))}


def _write(ops, run_id, **values):
    with ops.engine.begin() as con:
        con.execute(update(OperationRun).where(OperationRun.id == run_id).values(**values))


@pytest.fixture
def hostile(world):
    "Runs of Contoso whose every rendered field holds something hostile, written directly into the rows."
    ops = world.ops
    nul = "\x00" if ops.dialect == "sqlite" else ""      # PostgreSQL text cannot hold NUL at all
    d = ops.directory
    evil_tenant = d.add_tenant(MARKUP + RTL + "Corp" + ZW + nul)
    evil_user = d.add_user(MARKUP + "Mallory" + RTL + "gpj.exe" + nul, email="mallory@evil.test",
                           tenants=[world.contoso, evil_tenant])
    runs = {}
    for name in ("markup", "big_summary", "big_failures", "big_context", "unicode", "times", "counts"):
        r = ops.runs.enqueue(evil_tenant if name == "markup" else world.contoso, "policy.sync", user=evil_user)
        runs[name] = r.id
    _write(ops, runs["markup"], type=MARKUP, initiator_name=MARKUP, status=SHORT, outcome=SHORT,
           failure_summary=[{"code": MARKUP, "message": MARKUP + " Graph call failed"}, MARKUP],
           context={MARKUP: MARKUP, "link": "javascript:alert(1)", "parent_run_id": MARKUP},
           summary_counts={MARKUP: 1, "total": MARKUP})
    _write(ops, runs["big_summary"], status="running",
           summary_counts={f"k{i}": "x" * 100 for i in range(MB10 // 110)} | {"total": 10, "processed": 4})
    _write(ops, runs["big_failures"], status="completed", outcome="failed",
           failure_summary=[{"code": "c" * 1000, "message": "m" * 1000} for _ in range(MB10 // 2020)])
    _write(ops, runs["big_context"], context={"blob": "y" * MB10, "nested": {"deep": ["z" * 1000] * 100}})
    _write(ops, runs["unicode"], initiator_name=f"Ada{RTL}nimda{ZW}{nul}", type=f"inventory.sync{ZW}",
           context={f"k{RTL}": f"v{nul}{ZW}"}, failure_summary=[{"code": None, "message": f"bad {RTL}txt.exe{nul}"}])
    _write(ops, runs["times"], status="running", created_at=datetime(1, 1, 1, tzinfo=timezone.utc),
           started_at=datetime(9999, 12, 31, tzinfo=timezone.utc), completed_at=datetime(2, 1, 1, tzinfo=timezone.utc),
           updated_at=datetime(1970, 1, 1, tzinfo=timezone.utc))
    _write(ops, runs["counts"], status="running",
           summary_counts={"total": 10**30, "processed": -1, "succeeded": "NaN", "failed": "1e400", "skipped": 1.5})
    with ops.engine.begin() as con:   # a notification whose stored data is hostile too
        con.execute(Notification.__table__.insert().values(
            user_id=evil_user.id, type="run.completed", run_id=runs["markup"], created_at=datetime.now(timezone.utc),
            data={"title": MARKUP * 100, "body": "b" * MB10, "status": MARKUP, "url": "javascript:alert(1)", "run_id": MARKUP}))
    return type("Hostile", (), dict(ops=ops, world=world, user=evil_user, tenant=evil_tenant, runs=runs))


def _assert_escaped(html: str):
    assert "<script" not in html and "<img" not in html and "onerror=\"" not in html
    assert RTL not in html and "\x00" not in html


def test_every_hostile_row_renders_bounded_escaped_text_and_stays_stored(hostile):
    ops, ids = hostile.ops, list(hostile.runs.values())
    before = _rows(ops, ids)
    v = ops.viewer(hostile.user)
    lm = OperationsListModel(v, page_size=50).refresh()
    assert set(ids) <= lm.ids
    for row in lm.rows:
        assert all(len(str(row[k])) <= MAX_NAME + 40 for k in ("label", "type", "initiator", "tenant", "summary"))
    table = runs_table_html(lm.rows)
    _assert_escaped(table)
    assert len(table) < 100_000                                     # 7 hostile rows, not 30 MB of page
    assert "&lt;script&gt;" in table                                 # shown literally, as text

    presenter = OperationUxPresenter()
    for name, rid in hostile.runs.items():
        d = RunDetailModel(v, rid).refresh()
        assert d.found, name
        page = detail_html(d.facts(), OPERATIONS_PATH)
        _assert_escaped(page)
        assert len(page) < 200_000, (name, len(page))
        run = ops.runs.get(rid)
        presenter.progress_row(run); presenter.terminal_notification(run); presenter.toast(run)
    facts = RunDetailModel(v, hostile.runs["times"]).refresh().facts()
    assert facts["duration"] == "0s" and facts["queued"] == "0001-01-01 00:00:00 UTC"   # reversed: never negative
    counts = RunDetailModel(v, hostile.runs["counts"]).refresh().facts()
    assert counts["progress"].percent is None                       # no percent from impossible counts
    assert _rows(ops, ids) == before                                 # rendering changed nothing stored


def test_hostile_notification_is_bounded_and_links_nowhere_else(hostile):
    inbox = InboxModel(hostile.ops.viewer(hostile.user)).refresh()
    item = next(i for i in inbox.items if i["title"].startswith("<script>"))
    assert item["url"] in (None, f"{RUN_PATH}?id={hostile.runs['markup']}")   # never the stored javascript: url
    assert item["status"] == "neutral" and len(item["body"]) < MAX_TEXT + 40
    html = notification_html(item)
    _assert_escaped(html)
    assert "javascript:" not in html and len(html) < 20_000
    assert notification_item(type("N", (), dict(id=1, run_id=None, read_at=None, created_at=None, data="[]"))())["title"]


def test_a_whole_session_over_hostile_rows_loads(hostile):
    "Page building over hostile rows and hostile names (tenant switcher, initiator menu) raises nothing."
    app = DashboardApp(hostile.ops)
    try:
        for route, args in ((OPERATIONS_PATH, {}), (RUN_PATH, {"id": str(hostile.runs["markup"])}),
                            (RUN_PATH, {"id": MARKUP}), (RUN_PATH, {"id": str(10**30)})):
            s = DashboardSession(app, hostile.user, route, args, {"opsux_tenant": MARKUP}, MARKUP).load()
            if s.detail and args["id"] != str(hostile.runs["markup"]): assert not s.detail.found
            s.close()
    finally:
        app.close()


# ------------------------------------------------------------------ filters from the URL

URL_TEXT = st.one_of(st.text(max_size=60), st.sampled_from(
    ["", "0", "-1", str(10**30), "1e3", "NaN", " 5 ", "٣", "9999-12-31", "0001-01-01", "2026-02-30", "2026-01-01T00:00",
     "\x00", "a\x00b", "x" * 5000, MARKUP, "'; DROP TABLE operation_runs; --", "%00", RTL + "ok"]))
FILTER_VALUES = st.fixed_dictionaries({k: URL_TEXT for k in (*ListFilters.FILTERS, "after", "page")})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=FILTER_VALUES)
def test_any_filter_values_give_a_page_or_a_clear_message(world, values):
    "Whatever the URL holds, the list shows a page (maybe empty) and says which values it ignored."
    ops = world.ops
    filters = ListFilters.from_query(values)                                         # typed, or a notice
    model = OperationsListModel(ops.viewer(world.cy), filters=filters).refresh()   # must not raise
    assert isinstance(model.rows, list)
    for problem in filters.notices():
        assert problem.endswith((".", "ignored.", "page.")) and len(problem) < 300 and "\x00" not in problem
    kw = filters.query_kwargs()
    if values["run_id"] and "run_id" not in kw: assert any("Run id" in p for p in filters.notices())
    if values["status"] and "status" not in kw: assert any("Status" in p for p in filters.notices())
    assert ListFilters.from_query(filters.query()).query() == filters.query()      # what the URL gets reads back


def test_filters_a_user_changes_in_the_page_never_raise(world):
    """Changing a filter widget to a hostile value (what a forged websocket message could do) keeps the session:
    text widgets take any text (a bad run id becomes a notice), typed widgets refuse a value of the wrong kind."""
    from datetime import date
    from opsux.ui.components import OperationsList
    app = DashboardApp(world.ops)
    s = DashboardSession(app, world.ada, OPERATIONS_PATH, {}, {}, None).load()
    try:
        listing = OperationsList(s.list)
        listing.show_filters()                              # built when first wanted (the Filters button)
        widgets = listing.widgets
        for value in ("\x00", str(10**30), "x" * 5000, "9999-12-31", MARKUP, " 7 "):
            widgets["run_id"].value = value                  # the binding parses; no exception may escape
        assert s.list.filters.run_id == 7
        widgets["run_id"].value = ""
        for key in ("since", "until"):
            for value in (date(9999, 12, 31), date(1, 1, 1), None):
                widgets[key].value = value
        for key in ("type", "status", "initiator"):
            for value in ("\x00", str(10**30), "x" * 5000, MARKUP):
                try: widgets[key].value = value                  # not one of the options
                except ValueError: assert key == "status"        # a typed filter refuses it outright
                assert "\x00" not in repr(s.list.filters.query_kwargs())   # nothing a database chokes on
            widgets[key].value = ""
        assert s.connection.online and s.list.rows is not None and s.list.error == ""
    finally:
        s.close(); app.close()


def test_mark_read_of_someone_elses_notification_changes_nothing(world):
    ops = world.ops
    r = ops.runs.enqueue(world.fabrikam, "inventory.sync", user=world.bob)
    ops.runs.start(r); ops.runs.complete(r)
    bobs = ops.viewer(world.bob).notifications()
    assert bobs and bobs[0].read_at is None
    ada = InboxModel(ops.viewer(world.ada))
    assert ada.mark_read(bobs[0].id) is False and ada.mark_all_read() == 0
    assert ops.viewer(world.bob).notifications()[0].read_at is None
    assert ops.viewer(world.ada).unread_count() == 0


def test_markup_in_catalog_labels_is_text_everywhere(world):
    "Labels come from a catalog (maybe a TOML file someone edited): list, detail, toast and inbox show them as text."
    from opsux.ui.pages import toast_html
    from opsux.rules.catalog import OperationCatalog
    ops = world.ops
    catalog = OperationCatalog({"evil.type": MARKUP + RTL})
    presenter = OperationUxPresenter(catalog=catalog)
    r = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    _write(ops, r.id, type="evil.type")
    v = ops.viewer(world.ada)
    rows = OperationsListModel(v, presenter).refresh().rows
    assert rows[0]["label"].startswith("<script>")
    d = RunDetailModel(v, r.id, presenter).refresh()
    for html in (runs_table_html(rows), detail_html(d.facts(), OPERATIONS_PATH),
                 toast_html(presenter.toast(ops.runs.get(r.id))),
                 toast_html(presenter.terminal_notification(ops.runs.get(r.id)))):
        _assert_escaped(html)
        assert "&lt;script&gt;" in html
