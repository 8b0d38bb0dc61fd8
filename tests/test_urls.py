"""Run links: one canonical shape, a total parser, and the round trip between them."""
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from opsux.rules.urls import (MAX_RUN_ID, OPERATIONS_PATH, RUN_PATH, operations_url, parse_run_id, run_id_of,
                        run_url)


def test_paths():
    assert OPERATIONS_PATH == "/operations" and RUN_PATH == "/operations/run"


@pytest.mark.parametrize("run", [42, "42", SimpleNamespace(id=42), {"id": 42}, {"id": "42"}])
def test_run_url_accepts_runs_ids_and_mappings(run):
    assert run_id_of(run) == 42
    assert run_url(run) == "/operations/run?id=42"
    assert run_url(run, base="http://127.0.0.1:5006") == "http://127.0.0.1:5006/operations/run?id=42"


@pytest.mark.parametrize("bad", [None, False, True, 0, -1, 1.5, "x", "", "1e3", {}, SimpleNamespace(), [1]])
def test_run_id_of_refuses_non_ids(bad):
    with pytest.raises(ValueError):
        run_id_of(bad)
    with pytest.raises(ValueError):
        run_url(bad)


bases = st.one_of(st.just(""), st.from_regex(r"https?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z0-9_-]{1,8}){0,3}/?",
                                             fullmatch=True))


@given(st.integers(min_value=1, max_value=MAX_RUN_ID), bases)
def test_run_url_parse_run_id_round_trip(run_id, base):
    url = run_url(run_id, base=base)
    assert url == f"{base.rstrip('/')}/operations/run?id={run_id}"
    assert parse_run_id(url) == run_id
    assert parse_run_id(str(run_id)) == run_id


@given(st.one_of(st.none(), st.text(), st.integers(), st.binary(), st.floats(), st.booleans()))
def test_parse_run_id_is_total(value):
    result = parse_run_id(value)
    assert result is None or (type(result) is int and 0 < result <= MAX_RUN_ID)


def test_parse_run_id_rejects_other_pages_and_ambiguity():
    assert parse_run_id("/operations?id=3") is None
    assert parse_run_id("/operations/run?id=3&id=4") is None
    assert parse_run_id("/operations/run?id=3&id=3") == 3


def test_operations_url_encodes_and_drops_none():
    assert operations_url() == "/operations"
    assert operations_url("https://h/", type="policy.bulk_archive", status=None, initiator="A&B c") == \
        "https://h/operations?type=policy.bulk_archive&initiator=A%26B+c"
