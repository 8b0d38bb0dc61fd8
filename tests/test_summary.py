"""Summary counts: allowed keys, valid values, canonical order, idempotence, totality."""
import json

import pytest
from hypothesis import given, strategies as st

from opsux.rules.summary import MAX_COUNT, SUMMARY_KEYS, normalize_summary_counts, summary_line


def test_keys_in_canonical_order():
    assert SUMMARY_KEYS == ("total", "processed", "succeeded", "failed", "skipped", "created", "updated",
                            "deleted", "items", "tenants")
    raw = {k: i for i, k in enumerate(reversed(SUMMARY_KEYS))}
    assert list(normalize_summary_counts(raw)) == list(SUMMARY_KEYS)


@pytest.mark.parametrize("value,expected", [
    ({"total": 10, "succeeded": 9, "failed": 1}, {"total": 10, "succeeded": 9, "failed": 1}),
    ('{"total": "10", "processed": " 4 "}', {"total": 10, "processed": 4}),
    # fractions are not counts: ignored (they used to be truncated to 12); integral floats and "1e3" are exact
    ({"total": 12.9, "items": "12.5", "tenants": "1e3", "processed": 7.0}, {"processed": 7, "tenants": 1000}),
    ({"total": True, "failed": None, "skipped": -1, "created": float("nan"), "updated": float("inf"),
      "deleted": [1], "items": {"n": 1}, "processed": "-2"}, {}),
    ({"Total": 1, "total ": 2, "succeded": 3}, {}),
    ({"total": MAX_COUNT, "failed": MAX_COUNT + 1}, {"total": MAX_COUNT}),
    ('[{"total": 1}]', {}),
    ("{not json", {}),
    (b'{"total": 7}', {"total": 7}),
    (None, {}),
])
def test_examples(value, expected):
    assert normalize_summary_counts(value) == expected


def test_huge_and_deep_inputs_do_not_raise():
    assert normalize_summary_counts("[" * 50_000 + "]" * 50_000) == {}
    assert normalize_summary_counts(json.dumps({"total": 1, "pad": "x" * 200_000})) == {}  # over MAX_TEXT: ignored
    assert normalize_summary_counts({"total": "9" * 10_000}) == {}
    assert normalize_summary_counts({"total": 10 ** 10_000}) == {}


def test_summary_line():
    assert summary_line({"total": 120, "succeeded": 118, "failed": 2}) == "120 total · 118 succeeded · 2 failed"
    assert summary_line({"junk": 1}) is None
    assert summary_line("") is None


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=12), st.sampled_from(["12.5", " 7 ", "1e3", "-1", "NaN", "+3", "0"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=8)
keys = st.one_of(st.sampled_from(SUMMARY_KEYS), st.text(max_size=10))
counts_dicts = st.dictionaries(keys, json_value, max_size=12)


@given(st.one_of(counts_dicts, counts_dicts.map(json.dumps), json_value, st.binary(), st.text()))
def test_only_allowed_keys_canonical_order_nonnegative_ints_idempotent(value):
    out = normalize_summary_counts(value)
    assert isinstance(out, dict)
    assert list(out) == [k for k in SUMMARY_KEYS if k in out]
    assert all(type(v) is int and 0 <= v <= MAX_COUNT for v in out.values())
    assert normalize_summary_counts(out) == out
    assert normalize_summary_counts(json.dumps(out)) == out
    line = summary_line(value)
    assert (line is None) == (not out)


def test_range_is_bigint():
    assert MAX_COUNT == 2**63 - 1


@pytest.mark.parametrize("value", [2**53, 2**53 + 1, 2**62 + 3, 2**63 - 1])
def test_big_integers_are_exact(value):
    for form in (value, str(value), f" {value} ", f"+{value}"):
        assert normalize_summary_counts({"total": form}) == {"total": value}
    assert normalize_summary_counts(json.dumps({"total": value, "processed": value - 1})) == \
        {"total": value, "processed": value - 1}


def test_beyond_the_range_or_inexact_is_ignored():
    assert normalize_summary_counts({"total": 2**63, "processed": str(2**63), "failed": 2.0**53 + 2,
                                     "skipped": 0.5, "created": "3.25"}) == {}
    assert normalize_summary_counts({"total": 2.0**53, "processed": "1e18"}) == {"total": 2**53, "processed": 10**18}


@given(st.integers(0, MAX_COUNT), st.integers(0, MAX_COUNT))
def test_any_count_in_range_round_trips_exactly(total, processed):
    counts = {"total": total, "processed": processed}
    assert normalize_summary_counts(counts) == counts
    assert normalize_summary_counts(json.dumps(counts)) == counts
    assert normalize_summary_counts({k: str(v) for k, v in counts.items()}) == counts
