"""Properties of the failure-message sanitizer: total, one line, bounded, idempotent, no secret survives."""
import os
import string
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from opsux.rules.failures import (MAX_FAILURES, MAX_MESSAGE_LENGTH, first_failure_message, normalize_failures,
                            sanitize_failure_message as sanitize)

# OPSUX_EXAMPLES=5000 for a deeper search than the default CI run
SETTINGS = settings(max_examples=int(os.environ.get("OPSUX_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

any_text = st.text(st.characters(), max_size=600)
# Text that looks like a real message: likely characters of messages, plus the structural ones.
message_text = st.text(st.sampled_from(string.printable + "{}[]<>\"'=:;&@/\\…é\u200b\u202e\x00"), max_size=600)


def assert_shape(result):
    assert result is None or isinstance(result, str)
    if result is None:
        return
    assert result and len(result) <= MAX_MESSAGE_LENGTH
    assert result == " ".join(result.split()), "one line, collapsed whitespace"
    assert not any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in result)


@SETTINGS
@given(st.one_of(any_text, message_text))
def test_shape_and_idempotence(text):
    result = sanitize(text)
    assert_shape(result)
    assert sanitize(result) == result


@SETTINGS
@given(message_text)
def test_text_with_a_letter_gives_a_message(text):
    # the sanitizer's last-resort except-branch must never be what produces the result
    assume(any(c.isascii() and c.isalnum() for c in text))
    assert sanitize(text) is not None


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=300),
                 st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=5),
                 st.lists(st.text(max_size=30), max_size=5), st.builds(ValueError, st.text(max_size=50))))
@SETTINGS
def test_any_type_is_handled(value):
    assert_shape(sanitize(value))


class Hostile:
    def __str__(self):
        raise RuntimeError("no str for you")


def test_odd_objects():
    assert sanitize(Hostile()) is None
    assert sanitize(KeyError("displayName")) == "KeyError: 'displayName'"
    assert sanitize(b"\xff\xfe token=abc123") == "\ufffd\ufffd token=[redacted]"
    assert sanitize({"error": {"code": "X", "message": "Y"}}) == "X: Y"
    assert sanitize(12.5) == "12.5"
    assert sanitize(True) is None
    assert sanitize(b"\xd8\x80 boom \xf0\x91\x82\xbd") == "boom"  # U+0600, U+110BD: format characters the list missed


HOSTILE = ["a" * 300_000, "Bearer " + "x" * 300_000, "{" * 100_000, "[" * 100_000, '{"a":' * 60_000,
           "=" * 300_000, "QUJD" * 75_000, "password=" * 33_000, "'\"" * 150_000, "<" * 300_000,
           "<html>" + "<title>" * 40_000, "://a:" * 60_000, "Traceback (most recent call last):\n" * 9_000,
           "\n" * 300_000, "\u200b" * 300_000, "-----BEGIN PRIVATE KEY-----\n" + "MIIE" * 75_000,
           "{'message': '" * 25_000, "a=" * 150_000, "eyJ" + "a." * 150_000, "AKIA" * 75_000,
           "Cookie: " + "a=b;" * 75_000, "\\" * 300_000, b"x" * 300_000, "x\n" * 150_000 + "ValueError: end"]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_shape(value):
    # timing is measured in bench/, here only the result shape is checked
    result = sanitize(value)
    assert_shape(result)
    assert sanitize(result) == result


# --- secrets embedded in benign text -------------------------------------------------------------------

WORDS = ["Sync", "failed", "for", "tenant", "42", "policy", "device", "not", "found", "retry", "after", "30",
         "seconds", "HTTP", "404", "503", "graph.microsoft.com", "db.internal:5432", "Token expired",
         "password policy", "secret scanning", "Key vault", "(id", "7)", "request", "denied."]
benign = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
alnum = string.ascii_letters + string.digits
token = st.text(st.sampled_from(alnum + "-_"), min_size=12, max_size=60)
b64 = st.text(st.sampled_from(alnum + "+/"), min_size=20, max_size=80)


@st.composite
def secrets(draw):
    "(rendered text, secret value) for one class of secret; values carry a digit like real ones do."
    v = draw(token) + str(draw(st.integers(0, 9)))
    kind = draw(st.sampled_from(range(17)))
    return [
        (f"password={v}", v), (f"Password: {v}", v), (f'"client_secret": "{v}"', v), (f"api_key={v}", v),
        (f"Authorization: Bearer {v}", v), (f"Bearer {v}", v), (f"https://svc:{v}@db.internal:5432/ops", v),
        (f"Server=db;Pwd={v};Encrypt=yes", v), (f"AccountKey={v}==;EndpointSuffix=core.windows.net", v),
        (f"https://x.blob.core.windows.net/a?sv=1&sig={v}", v), (f"?X-Amz-Signature={v}&X-Amz-Date=1", v),
        (f"Cookie: sessionid={v}; theme=dark", v), (f"refresh_token={v}&scope=x", v),
        ("AKIA" + (w := draw(st.text(st.sampled_from(string.ascii_uppercase + string.digits), min_size=16, max_size=16))), w),
        ("eyJ" + (w := draw(b64).replace("+", "-").replace("/", "_")) + ".eyJzdWIiOiIxIn0.sig", w),
        (f"-----BEGIN PRIVATE KEY-----\n{(w := draw(b64))}\n-----END PRIVATE KEY-----", w),
        (f"aws_secret_access_key={v}", v),
    ][kind]


@SETTINGS
@given(benign, secrets(), benign)
def test_no_secret_survives(before, secret, after):
    rendered, value = secret
    assume(value not in before + after)
    result = sanitize(f"{before} {rendered} {after}")
    assert result is not None and value not in result


@SETTINGS
@given(benign, st.uuids(), st.integers(0, 10**9), benign)
def test_benign_ids_survive(before, guid, number, after):
    text = f"{before} run {number} failed for {guid} on graph.microsoft.com (HTTP 404) {after}"
    assume(len(" ".join(text.split())) <= MAX_MESSAGE_LENGTH)
    result = sanitize(text)
    assert result == " ".join(text.split())
    assert str(guid) in result and str(number) in result


# --- failure lists ---------------------------------------------------------------------------------------

json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                         lambda c: st.lists(c, max_size=6) | st.dictionaries(st.sampled_from(["code", "message", "error", "x"]) | st.text(max_size=8), c, max_size=5),
                         max_leaves=25)


@SETTINGS
@given(st.one_of(json_like, any_text, st.lists(st.text(max_size=50), max_size=200)))
def test_normalize_failures_is_total_and_bounded(value):
    failures = normalize_failures(value)
    assert isinstance(failures, list) and len(failures) <= MAX_FAILURES
    for f in failures:
        assert set(f) == {"code", "message"}
        assert_shape(f["message"]) and f["message"] is not None
        assert f["code"] is None or (isinstance(f["code"], str) and len(f["code"]) <= 100)
    assert first_failure_message(value) == (failures[0]["message"] if failures else None)


def test_normalize_failures_from_json_text():
    stored = '[{"code": "graph.503", "message": "Graph returned 503", "detail": {"token": "x"}}, "password=hunter2"]'
    assert normalize_failures(stored) == [{"code": "graph.503", "message": "Graph returned 503"},
                                          {"code": None, "message": "password=[redacted]"}]
    assert first_failure_message(stored) == "Graph returned 503"
    assert normalize_failures("[not json") == [{"code": None, "message": "[not json"}]
    assert normalize_failures(None) == [] and first_failure_message(None) is None


# Messages assembled from the pieces the rules react to: the hardest inputs for idempotence.
FRAGMENTS = ["password=", "Password: ", "token=", "Bearer ", "Basic ", "Authorization: ", "Cookie: a=b; ", "sig=", "://u:",
             "@", "AKIA", "eyJ", "Q~", '{"error": {"code": "X", "message": "', '"}}', "{'message': '", "'}", "[{\"",
             "<html><title>", "</title></html>", "<?xml?><Error><Code>C</Code><Message>", "</Message></Error>",
             "Traceback (most recent call last):\n", '  File "x.py", line 1\n', "ValueError: ", "\n", " ", "…",
             "[redacted]", "-----BEGIN PRIVATE KEY-----\n", "-----END PRIVATE KEY-----", "abc123", "x" * 40,
             "3fa85f64-5717-4562-b3fc-2c963f66afa6", "&", ";", '"', "'", "\\", "\u202e", "\u200b", "é"]


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_idempotent_on_rule_fragments(text):
    result = sanitize(text)
    assert_shape(result)
    assert sanitize(result) == result
