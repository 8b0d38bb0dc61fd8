"""Presenter: unit checks on realistic runs and hypothesis properties over arbitrary run-shaped input."""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from opsux.rules.catalog import DEFAULT_CATALOG, OperationCatalog
from opsux.rules.presenter import (MAX_BODY_LENGTH, NOTIFICATION_STATUSES, EtaSmoother, OperationUxPresenter, ProgressRow,
                                   TerminalNotification, Toast, as_utc, format_duration, format_percent, progress_percent,
                                   run_duration, widget_sort_key)
from opsux.rules.status import legacy_map
from opsux.rules.status import UxStatus
from opsux.rules.summary import summary_line
from opsux.rules.urls import OPERATIONS_PATH, run_url

NOW = datetime(2026, 1, 18, 14, 50, tzinfo=timezone.utc)
FIELDS = ("id", "tenant_id", "user_id", "initiator_name", "type", "status", "outcome", "started_at", "completed_at",
          "summary_counts", "failure_summary", "context", "created_at", "updated_at")


def ago(seconds: float) -> datetime: return NOW - timedelta(seconds=seconds)


@pytest.fixture
def ux() -> OperationUxPresenter: return OperationUxPresenter(clock=lambda: NOW)


def running_run(**kw) -> dict:
    run = {"id": 5, "tenant_id": 1, "type": "inventory.sync", "status": "running", "outcome": "pending",
           "created_at": ago(100), "started_at": ago(90), "heartbeat_at": ago(1),
           "summary_counts": {"total": 120, "processed": 45}}
    return run | kw


# ---------------------------------------------------------------- units

def test_dataclasses_have_exactly_the_contract_fields():
    from dataclasses import MISSING, fields
    assert [f.name for f in fields(Toast)] == ["title", "body", "level", "url"]
    contract = ["run_id", "label", "status", "status_text", "percent", "elapsed_seconds", "eta_seconds", "elapsed_text",
                "eta_text", "url"]
    assert [f.name for f in fields(ProgressRow)][:10] == contract
    assert all(f.default is not MISSING for f in fields(ProgressRow)[10:])  # later fields only with defaults
    assert [f.name for f in fields(TerminalNotification)] == ["title", "body", "status", "url"]


def test_default_presenter_uses_default_catalog_and_real_clock():
    ux = OperationUxPresenter()
    assert ux.catalog is DEFAULT_CATALOG
    before = datetime.now(timezone.utc)
    assert before <= ux.now() <= datetime.now(timezone.utc)
    row = ux.progress_row(running_run(started_at=datetime.now(timezone.utc) - timedelta(seconds=30)))
    assert 29 <= row.elapsed_seconds <= 60


def test_custom_catalog_labels():
    ux = OperationUxPresenter(catalog=OperationCatalog({"acme.export": "Acme export"}), clock=lambda: NOW)
    assert ux.toast({"id": 1, "type": "acme.export"}).title == "Acme export queued"
    assert ux.toast({"id": 1, "type": "inventory.sync"}).title == "Unknown operation queued"


def test_toast_queued_and_existing(ux):
    t = ux.toast({"id": 3, "type": "inventory.sync", "status": "queued"})
    assert (t.title, t.level, t.url) == ("Inventory sync queued", "info", "/operations/run?id=3")
    assert "background" in t.body and "notified" in t.body
    e = ux.toast(running_run(id=3), existing=True)
    assert e.title == "Inventory sync already running" and e.url == t.url and e.level in ("info", "warning")
    assert ux.toast(SimpleNamespace(id=3, type="inventory.sync", deduplicated=True)).title.endswith("already running")
    assert ux.toast(SimpleNamespace(id=3, type="inventory.sync", deduplicated=True), existing=False).title.endswith("queued")


def test_progress_row_running_with_eta(ux):
    row = ux.progress_row(running_run())
    assert row == ProgressRow(5, "Inventory sync", UxStatus.running, "Running · 45 of 120", 37.5, 90, 150,
                              "1m 30s", "2m 30s", "/operations/run?id=5")


def test_progress_row_queued_says_waiting(ux):
    row = ux.progress_row({"id": 6, "type": "policy.sync", "status": "queued", "outcome": "pending", "created_at": ago(12)})
    assert (row.status, row.status_text, row.elapsed_seconds, row.elapsed_text, row.eta_seconds) == \
        (UxStatus.queued, "Queued · waiting 12s", 12, "12s", None)


def test_progress_row_terminal_uses_start_to_end(ux):
    run = running_run(status="completed", outcome="succeeded", completed_at=ago(25),
                      summary_counts={"total": 120, "processed": 120})
    row = ux.progress_row(run)
    assert (row.status_text, row.percent, row.elapsed_seconds, row.elapsed_text, row.eta_seconds, row.eta_text) == \
        ("Completed", 100.0, 65, "1m 05s", None, None)


def test_eta_needs_evidence(ux):
    assert ux.progress_row(running_run(started_at=ago(2))).eta_seconds is None          # too early
    assert ux.progress_row(running_run(summary_counts={"total": 9, "processed": 0})).eta_seconds is None
    assert ux.progress_row(running_run(summary_counts={"total": 9, "processed": 9})).eta_seconds is None
    assert ux.progress_row(running_run(summary_counts={"processed": 9})).eta_seconds is None
    assert ux.progress_row(running_run(started_at=None)).eta_seconds is None


def test_eta_is_smoothed_and_deterministic():
    def series():
        ux = OperationUxPresenter(clock=lambda: NOW)
        out = []
        for t, processed in ((0, 45), (30, 60), (32, 100), (33, 101), (34, 102)):
            row = ux.progress_row(running_run(summary_counts={"total": 120, "processed": processed}),
                                  now=NOW + timedelta(seconds=t))
            out.append(row.eta_seconds)
        return out
    first = series()
    assert first == series()  # same clock, same answers
    assert first[:2] == [150, 120]
    raw_after_burst = math.ceil(122 * 20 / 100)
    assert raw_after_burst < first[2] < first[1]  # eased towards the new estimate, not jumped
    unsmoothed = OperationUxPresenter(eta_memory=0).progress_row(
        running_run(summary_counts={"total": 120, "processed": 100}), now=NOW + timedelta(seconds=32))
    assert unsmoothed.eta_seconds == raw_after_burst


def test_eta_same_instant_is_idempotent(ux):
    a = ux.progress_row(running_run())
    b = ux.progress_row(running_run())
    assert a == b


def test_eta_memory_is_bounded_and_forgotten_when_done():
    ux = OperationUxPresenter(clock=lambda: NOW, eta_memory=3)
    for run_id in range(1, 10):
        ux.progress_row(running_run(id=run_id))
    assert len(ux.eta) == 3
    ux.progress_row(running_run(id=9, status="completed", outcome="succeeded", completed_at=NOW))
    assert len(ux.eta) == 2


def test_eta_smoother_answers_slightly_older_instants_from_memory_and_resets_on_big_jumps():
    sm = EtaSmoother()
    sm.smooth(1, 100.0, NOW, 10)
    assert sm.smooth(1, 40.0, NOW - timedelta(seconds=5), 10) == 105.0  # a session 5 s behind: same countdown
    assert sm.smooth(1, 40.0, NOW, 10) == 100.0  # ... and it changed nothing
    assert sm.smooth(1, 40.0, NOW - timedelta(minutes=5), 10) == 40.0  # clock jumped back: start afresh
    assert sm.smooth(1, 7.0, NOW + timedelta(hours=1), 99) == 7.0  # total changed: new estimate


@pytest.mark.parametrize("started, expected", [
    (NOW + timedelta(seconds=3), 0),                 # clock skew → clamp to 0
    (NOW - timedelta(days=800), 800 * 86400),         # long, but shown: the same bound as the list's duration
    (NOW - timedelta(days=20 * 365), None),          # absurd (a 1970s or year-1 timestamp) → absent
    (NOW + timedelta(days=800), None),
    ("2026-01-18T14:49:00", 60),                     # naive ISO text = UTC
    ("2026-01-18T15:49:00+01:00", 60),
    (datetime(2026, 1, 18, 14, 49), 60),             # naive datetime = UTC
    ("not a date", None),
    (1737211740, None),
    (date(2026, 1, 18), None),
])
def test_elapsed_clamps_and_parses(ux, started, expected):
    assert ux.progress_row(running_run(started_at=started)).elapsed_seconds == expected


def test_reversed_terminal_timestamps_clamp_to_zero(ux):
    row = ux.progress_row(running_run(status="completed", outcome="failed", started_at=NOW, completed_at=ago(30)))
    assert row.elapsed_seconds == 0 and row.elapsed_text == "0s"


@pytest.mark.parametrize("outcome, status, title_end", [
    ("succeeded", "success", "completed"), ("partially_succeeded", "warning", "completed with failures"),
    ("failed", "danger", "failed"), ("cancelled", "neutral", "cancelled"), ("mystery", "neutral", "finished"),
])
def test_terminal_notification_titles_and_status(ux, outcome, status, title_end):
    n = ux.terminal_notification({"id": 4, "type": "policy.sync", "status": "completed", "outcome": outcome})
    assert (n.title, n.status, n.url) == (f"Policy sync {title_end}", status, run_url(4))
    assert n.body  # fallback sentence when there are no counts


def test_terminal_notification_body_and_failure_suffix(ux):
    counts = {"total": 120, "processed": 120, "succeeded": 118, "failed": 2}
    failures = [{"code": "graph.503", "message": "Graph returned 503 Service Unavailable"}]
    n = ux.terminal_notification({"id": 4, "type": "policy.sync", "status": "completed",
                                  "outcome": "partially_succeeded", "summary_counts": counts, "failure_summary": failures})
    assert n.body == f"{summary_line(counts)} — Graph returned 503 Service Unavailable"
    ok = ux.terminal_notification({"id": 4, "type": "policy.sync", "status": "completed", "outcome": "succeeded",
                                   "summary_counts": counts, "failure_summary": failures})
    assert ok.body == summary_line(counts)  # failures are only a suffix on failed/partial runs


def test_terminal_notification_sanitizes_and_bounds(ux):
    secret = "password=hunter2 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    n = ux.terminal_notification({"id": 4, "type": "restore.execute", "status": "failed",
                                  "failure_summary": [{"message": f"Restore failed: {secret}\n" + "x" * 50_000}]})
    assert n.title == "Restore execution failed" and n.status == "danger"
    assert "Restore failed" in n.body
    assert "hunter2" not in n.body and "eyJhbGciOiJIUzI1NiJ9" not in n.body
    assert len(n.body) <= MAX_BODY_LENGTH and "\n" not in n.body


def test_legacy_failed_row_and_object_input(ux):
    legacy = SimpleNamespace(id=7, type="restore.execute", status="failed", outcome=None,
                             started_at="2026-01-18 14:00:00", completed_at=datetime(2026, 1, 18, 14, 3, 5),
                             summary_counts='{"total": 5, "processed": 5}')
    row = ux.progress_row(legacy)
    assert (row.status, row.elapsed_text, row.percent, row.url) == (UxStatus.failed, "3m 05s", 100.0, run_url(7))
    assert ux.terminal_notification(legacy).status == "danger"


def test_orm_object(ux):
    models = pytest.importorskip("opsux.store.models")
    run = models.OperationRun(id=11, tenant_id=1, type="inventory.sync", status="running", outcome="pending",
                              started_at=datetime(2026, 1, 18, 14, 49), summary_counts={"total": 10, "processed": 5})
    row = ux.progress_row(run)
    assert (row.run_id, row.label, row.percent, row.elapsed_seconds, row.eta_seconds) == (11, "Inventory sync", 50.0, 60, 60)


def test_no_usable_id_links_to_operations_list(ux):
    for run in (None, {}, {"id": "abc"}, SimpleNamespace(type="inventory.sync")):
        assert ux.toast(run).url == OPERATIONS_PATH
        assert ux.progress_row(run).run_id is None


def test_helpers():
    assert [format_duration(s) for s in (42, 65, 7380, 273600)] == ["42s", "1m 05s", "2h 03m", "3d 04h"]
    assert format_duration(None) == "—"
    assert progress_percent({"total": 3, "processed": 2}) == 66.6
    assert as_utc("2026-01-18T14:50:00Z") == NOW


# ---------------------------------------------------------------- properties

tzs = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
near = st.builds(lambda s: NOW + timedelta(seconds=s), st.floats(-3 * 86400, 86400, allow_nan=False))
timestamps = st.one_of(
    near, near.map(lambda d: d.replace(tzinfo=None)), near.map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.none() | tzs), st.dates(), st.text(max_size=30))
counts = st.one_of(
    st.fixed_dictionaries({}, optional={k: st.one_of(st.integers(-5, 10**6), st.floats(), st.text(max_size=5),
                                                     st.none(), st.booleans())
                                        for k in ("total", "processed", "succeeded", "failed", "skipped")}),
    st.dictionaries(st.text(max_size=10), st.integers() | st.floats() | st.text(max_size=10)),
    st.text(max_size=60))
failure_summaries = st.one_of(
    st.lists(st.fixed_dictionaries({"message": st.text(max_size=400)}, optional={"code": st.text(max_size=10)}),
             max_size=3),
    st.lists(st.text(max_size=200), max_size=3), st.text(max_size=200))
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40), st.binary(max_size=20),
                     st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                     st.datetimes(), st.builds(object))
vocab = st.sampled_from(["queued", "running", "completed", "failed", "pending", "succeeded", "partially_succeeded",
                         "cancelled", " Completed ", "RUNNING", ""])
realistic = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(-3, 10**12), st.text(max_size=6), st.none()),
    "type": st.one_of(st.sampled_from(DEFAULT_CATALOG.types() + ("legacy.thing", "")), anything),
    "status": st.one_of(vocab, anything), "outcome": st.one_of(vocab, anything),
    "started_at": st.one_of(timestamps, anything), "completed_at": st.one_of(timestamps, anything),
    "created_at": st.one_of(timestamps, anything), "updated_at": st.one_of(timestamps, anything),
    "summary_counts": st.one_of(counts, anything), "failure_summary": st.one_of(failure_summaries, anything),
    "context": anything, "tenant_id": anything, "user_id": anything, "initiator_name": anything,
    "deduplicated": anything})
wild = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), anything, max_size=16)
runs = st.one_of(realistic, wild, realistic.map(lambda d: SimpleNamespace(**d)), anything)
nows = st.one_of(st.none(), near, timestamps, anything)


def check_all(ux: OperationUxPresenter, run, now) -> None:
    toast, row, note = ux.toast(run), ux.progress_row(run, now=now), ux.terminal_notification(run)
    try: expected_url = run_url(run)
    except Exception: expected_url = OPERATIONS_PATH
    assert toast.url == row.url == note.url == expected_url
    assert isinstance(toast.title, str) and toast.level in ("info", "warning") and toast.body
    assert isinstance(row.status, UxStatus)
    assert row.percent is None or 0 <= row.percent <= 100
    assert row.eta_seconds is None or row.eta_seconds >= 0
    assert row.eta_seconds is None or (row.status is UxStatus.running and not row.stalled)
    assert row.percent_text == format_percent(row.percent)
    assert row.percent != 100.0 or row.eta_seconds is None
    assert (row.eta_text is None) == (row.eta_seconds is None)
    assert row.elapsed_seconds is None or row.elapsed_seconds >= 0
    assert row.elapsed_text == (None if row.elapsed_seconds is None else format_duration(row.elapsed_seconds))
    assert row.eta_text == (None if row.eta_seconds is None else format_duration(row.eta_seconds))
    assert isinstance(row.label, str) and row.label and isinstance(row.status_text, str) and row.status_text
    assert note.status in NOTIFICATION_STATUSES
    assert note.body and len(note.body) <= MAX_BODY_LENGTH and isinstance(note.title, str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs, now=nows)
def test_never_raises_and_stays_in_range(run, now):
    check_all(OperationUxPresenter(clock=lambda: NOW), run, now)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(-30, 120, allow_nan=False), st.integers(0, 200)), min_size=1, max_size=12))
def test_eta_never_negative_over_a_series(steps):
    ux = OperationUxPresenter(clock=lambda: NOW)
    t = 0.0
    for dt, processed in steps:
        t += dt
        row = ux.progress_row(running_run(started_at=ago(60), summary_counts={"total": 150, "processed": processed}),
                              now=NOW + timedelta(seconds=t))
        assert row.eta_seconds is None or row.eta_seconds >= 0
        if processed == 0 or processed >= 150: assert row.eta_seconds is None


@settings(max_examples=50, deadline=None)
@given(clock=st.one_of(anything, st.just(lambda: "garbage"), st.just(lambda: 1 / 0)), run=realistic)
def test_a_broken_clock_falls_back_to_real_time(clock, run):
    check_all(OperationUxPresenter(clock=clock if callable(clock) else (lambda: clock)), run, None)



# ---------------------------------------------------------------- display rules (issue 14 item 7, issue 15 item 7)

@pytest.mark.parametrize("counts, text, percent, percent_text, has_eta", [
    ({"total": 200, "processed": 199}, "Running · 199 of 200", 99.5, "99%", True),   # was shown as "100 %"
    ({"total": 200, "processed": 200}, "Running · 200 of 200", 100.0, "100%", False),
    ({"total": 30, "processed": 70}, "Running · 70 processed, over the total of 30", None, None, False),  # was "70 of 30", 100 %
    ({"total": 2**62, "processed": 2**61}, "Running · 2,305,843,009,213,693,952 of 4,611,686,018,427,387,904",
     50.0, "50%", True),
    ({"total": 2**63 - 1, "processed": 2**63 - 2}, None, 99.9, "99%", True),
    ({"processed": 7}, "Running · 7 processed", None, None, False),
])
def test_display_rules(ux, counts, text, percent, percent_text, has_eta):
    row = ux.progress_row(running_run(summary_counts=counts))
    if text is not None: assert row.status_text == text
    assert (row.percent, row.percent_text, row.eta_seconds is not None) == (percent, percent_text, has_eta)


def test_percent_is_exact_and_never_100_before_the_end():
    for total in (3, 200, 1201, 2**53 + 1, 2**63 - 1):
        assert progress_percent({"total": total, "processed": total - 1}) < 100
        assert progress_percent({"total": total, "processed": total}) == 100.0
        assert format_percent(progress_percent({"total": total, "processed": total - 1})) != "100%"


@given(st.integers(1, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_percent_floor_property(total, processed):
    p = progress_percent({"total": total, "processed": processed})
    if processed > total: assert p is None
    else: assert round(p * 10) == processed * 1000 // total and (p == 100.0) == (processed == total)


def test_elapsed_is_the_same_in_widget_list_and_detail(ux):
    for days in (0.01, 3, 400, 3000):
        run = running_run(started_at=NOW - timedelta(days=days))
        row = ux.progress_row(run)
        assert row.elapsed_text == format_duration(run_duration(run, NOW)) != "—"
        done = running_run(status="completed", outcome="succeeded", started_at=NOW - timedelta(days=days), completed_at=NOW)
        assert ux.progress_row(done).elapsed_text == format_duration(run_duration(done, NOW))
    assert ux.progress_row(running_run(started_at=NOW - timedelta(days=400))).elapsed_text == "400d 00h"  # was hidden


def test_stalled_running_run(ux):
    run = running_run(started_at=ago(600), heartbeat_at=ago(185))
    row = ux.progress_row(run)
    assert (row.status, row.stalled, row.status_text, row.eta_seconds, row.eta_text) == \
        (UxStatus.running, True, "Stalled · no heartbeat for 3m 05s", None, None)
    assert row.percent == 37.5  # progress so far is still shown
    assert not ux.progress_row(running_run(started_at=ago(600), heartbeat_at=ago(30))).stalled
    # a host table without heartbeat_at: updated_at is the sign of life, then started_at
    assert not ux.progress_row(running_run(heartbeat_at=None, started_at=ago(900), updated_at=ago(5))).stalled
    assert ux.progress_row(running_run(heartbeat_at=None, started_at=ago(900))).stalled
    assert not OperationUxPresenter(clock=lambda: NOW, stall_after=600).progress_row(run).stalled
    assert not ux.progress_row(running_run(status="queued", heartbeat_at=ago(999), created_at=ago(999))).stalled


def test_widget_order_running_oldest_first_then_queued_oldest_first():
    runs = [running_run(id=1, status="queued", created_at=ago(50)), running_run(id=2, started_at=ago(10)),
            running_run(id=3, status="queued", created_at=ago(90)), running_run(id=4, started_at=ago(300)),
            running_run(id=5, status="completed", outcome="failed", created_at=ago(999)),
            running_run(id=6, started_at=None, created_at=None)]
    assert [r["id"] for r in sorted(runs, key=widget_sort_key)] == [4, 2, 6, 3, 1, 5]
    rows = {r["id"]: r for r in runs}
    assert sorted(rows, key=lambda i: widget_sort_key(rows[i], UxStatus.queued))[0] == 5  # a given status is used


def test_legacy_map_in_the_presenter():
    host = running_run(status="completed", outcome=None, completed_at=NOW,
                       summary_counts={"total": 5, "succeeded": 4, "failed": 1})
    plain, hosted = OperationUxPresenter(clock=lambda: NOW), OperationUxPresenter(clock=lambda: NOW, legacy=legacy_map())
    assert plain.progress_row(host).status is UxStatus.unknown
    assert hosted.progress_row(host).status is UxStatus.partial
    assert hosted.terminal_notification(host).status == "warning"
    with pytest.raises(ValueError):
        OperationUxPresenter(legacy={("completed", ""): "finished"})
