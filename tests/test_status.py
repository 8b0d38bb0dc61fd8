"""Status normalization: seed rules, precedence, and totality over any input."""
import pytest
from hypothesis import given, strategies as st

from opsux.rules.status import ACTIVE_STATUSES, OUTCOMES, STATUSES, UxStatus, normalize


@pytest.mark.parametrize("status,outcome,expected", [
    ("completed", "succeeded", "succeeded"),            # seed
    ("completed", "partially_succeeded", "partial"),   # seed
    ("failed", "pending", "failed"),                    # seed: status failed OR ...
    ("completed", "failed", "failed"),                  # ... outcome failed
    ("running", "failed", "failed"),
    ("completed", "cancelled", "cancelled"),            # extension
    ("failed", "cancelled", "failed"),                  # failed beats cancelled
    ("queued", "pending", "queued"),
    ("running", "pending", "running"),
    ("running", None, "running"),
    ("completed", "pending", "unknown"),                # finished without a result
    ("", "", "unknown"),
    (None, None, "unknown"),
    (" COMPLETED ", "Partially_Succeeded\n", "partial"),  # case and whitespace ignored
    (b"completed", b"succeeded", "succeeded"),
    (42, "succeeded", "succeeded"),
    ("weird", "pending", "unknown"),
])
def test_rules(status, outcome, expected):
    assert normalize(status, outcome) is UxStatus(expected)


def test_vocabulary_constants():
    assert STATUSES == ("queued", "running", "completed")
    assert OUTCOMES == ("pending", "succeeded", "partially_succeeded", "failed", "cancelled")
    assert ACTIVE_STATUSES == ("queued", "running")
    for s in ACTIVE_STATUSES:
        assert normalize(s, "pending").is_active


def test_labels_and_flags():
    assert {s.value: s.label for s in UxStatus} == {
        "queued": "Queued", "running": "Running", "succeeded": "Completed", "partial": "Partial",
        "failed": "Failed", "cancelled": "Cancelled", "unknown": "Unknown"}
    assert [s for s in UxStatus if s.is_active] == [UxStatus.queued, UxStatus.running]
    assert not any(s.is_active and s.is_terminal for s in UxStatus)
    assert UxStatus.succeeded == "succeeded" and str(UxStatus.partial) == "partial"


class Evil:
    def __str__(self): raise RuntimeError("boom")
    def __eq__(self, other): raise RuntimeError("boom")
    __hash__ = object.__hash__


class EvilStr(str):
    def strip(self, *a): raise RuntimeError("boom")
    def lower(self): raise RuntimeError("boom")


anything = st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.binary(), st.booleans(),
                     st.sampled_from(STATUSES + OUTCOMES + ("failed", " Running ", "CANCELLED")),
                     st.lists(st.text(), max_size=2), st.builds(Evil))


@given(anything, anything)
def test_normalize_is_total(status, outcome):
    assert isinstance(normalize(status, outcome), UxStatus)


def test_hostile_str_subclass():
    assert normalize(EvilStr("running"), EvilStr("pending")) is UxStatus.running


@given(st.sampled_from(STATUSES + ("failed",)), st.sampled_from(OUTCOMES),
       st.text(alphabet=" \t\n", max_size=3), st.booleans())
def test_case_and_surrounding_whitespace_do_not_matter(status, outcome, pad, upper):
    dress = (lambda v: pad + v.upper() + pad) if upper else (lambda v: pad + v.title() + pad)
    assert normalize(dress(status), dress(outcome)) is normalize(status, outcome)
