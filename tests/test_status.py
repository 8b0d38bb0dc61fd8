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


# --- derived outcome and legacy rows ----------------------------------------------------------------------

from opsux.rules.status import DERIVE, LEGACY, derive_outcome, legacy_map, normalize_legacy


@pytest.mark.parametrize("counts,failures,expected", [
    ({"total": 10, "succeeded": 8, "failed": 2}, None, "partially_succeeded"),
    ({"total": 10, "succeeded": 0, "failed": 10}, None, "failed"),
    ({"total": 10, "succeeded": 10}, None, "succeeded"),
    ({"processed": 5}, [{"message": "boom"}], "partially_succeeded"),
    ({"processed": 2, "failed": 2}, None, "failed"),
    ({"total": 2**62, "succeeded": 2**60, "failed": 2**55}, None, "partially_succeeded"),  # was "failed"
    ('{"succeeded": 9007199254740993, "failed": 1}', None, "partially_succeeded"),
    ({}, None, "succeeded"),
])
def test_derive_outcome(counts, failures, expected):
    assert derive_outcome(counts, failures) == expected


def test_the_service_derives_the_same_outcome():
    "The service applies the rule; it has no copy of its own."
    service = pytest.importorskip("opsux.store.service")
    assert service.derive_outcome is derive_outcome


@pytest.mark.parametrize("status,outcome,counts,expected", [
    ("completed", None, {"total": 10, "succeeded": 8, "failed": 2}, "partial"),
    ("completed", "", {"total": 3, "succeeded": 3}, "succeeded"),
    ("completed", "pending", {"failed": 3}, "failed"),
    ("completed", None, None, "unknown"),                      # no evidence, no guess
    ("completed", "succeeded", {"failed": 9}, "succeeded"),    # the seed decides, the map never re-decides
    ("running", "canceled", None, "running"),                  # an active run stays active
    ("Canceled", None, None, "cancelled"),
    ("done", None, {"succeeded": 1}, "succeeded"),
    ("error", None, None, "failed"),
    ("pending", None, None, "queued"),
    ("weird", "canceled", None, "cancelled"),
    ("weird", None, {"succeeded": 1}, "unknown"),
])
def test_normalize_legacy(status, outcome, counts, expected):
    assert normalize_legacy(status, outcome, counts) is UxStatus(expected)


def test_legacy_only_fills_unknown_cells():
    words = list(STATUSES + OUTCOMES) + ["failed", "cancelled", "", None, "done", "canceled", "error", "weird"]
    for s in words:
        for o in words:
            plain = normalize(s, o)
            if plain is not UxStatus.unknown:
                assert normalize_legacy(s, o, {"succeeded": 1, "failed": 1}) is plain


def test_legacy_map_validates_and_accepts_text_keys():
    assert legacy_map({"completed/": DERIVE, "done/*": "succeeded"}) == {("completed", ""): "derive",
                                                                         ("done", "*"): "succeeded"}
    with pytest.raises(ValueError, match="expected one of"):
        legacy_map({"completed/": "finished"})
    with pytest.raises(ValueError, match="expected \\(status, outcome\\)"):
        legacy_map({"completed": DERIVE})
    assert len(legacy_map()) == len(LEGACY)
    assert normalize_legacy("completed", None, {"succeeded": 1}, legacy=legacy_map({})) is UxStatus.unknown


@given(anything, anything, st.one_of(anything, st.dictionaries(st.sampled_from(["succeeded", "failed"]),
                                                               st.integers(-3, 2**64))), anything)
def test_normalize_legacy_is_total(status, outcome, counts, failures):
    assert isinstance(normalize_legacy(status, outcome, counts, failures), UxStatus)
