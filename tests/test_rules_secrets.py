"""The sanitizer's secret key names, checked against detect-secrets (a dev dependency) as the upstream rule set."""
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from opsux.rules.failures import (DETECT_SECRETS_KEYWORDS, LOOSE_KEYWORDS, REDACTED, SECRET_KEYWORDS, secret_kind,
                                  sanitize_failure_message as sanitize)

keyword = pytest.importorskip("detect_secrets.plugins.keyword")
CORPUS = json.loads((Path(__file__).parent / "data" / "failure_corpus.json").read_text())


def upstream_words() -> set[str]:
    "detect-secrets' KeywordDetector DENYLIST with its optional `_` dropped: 'api_?key' -> 'apikey'."
    out = set()
    for pattern in keyword.DENYLIST:
        assert re.fullmatch(r"[a-zñ_?]+", pattern), f"new kind of DENYLIST entry, read it by hand: {pattern!r}"
        out.add(pattern.replace("_?", "").replace("_", ""))
    return out


def test_shipped_list_is_the_upstream_list():
    # fails when detect-secrets adds or drops a keyword: update DETECT_SECRETS_KEYWORDS to match
    assert {w.replace(" ", "") for w in DETECT_SECRETS_KEYWORDS} == upstream_words()
    assert set(DETECT_SECRETS_KEYWORDS) <= set(SECRET_KEYWORDS)
    assert not set(LOOSE_KEYWORDS) & set(SECRET_KEYWORDS)


def spellings(words: list[str]) -> list[str]:
    "One key name in every style vendors use."
    cap = [w[:1].upper() + w[1:] for w in words]
    return ["_".join(words), "".join(words), words[0] + "".join(cap[1:]), "".join(cap), "-".join(words),
            ".".join(words), "_".join(words).upper(), "-".join(cap), "db_" + "_".join(words), "x-" + "-".join(words)]


VALUE = "Zx81-kQ9v-Tr4p"
CONTEXTS = ["{k}={v} next", '{{"{k}": "{v}", "next": 1}}', "'{k}' => '{v}', next", "<{k}>{v}</{k}> next",
            '<cfg {k}="{v}" next="1"/>', "GET /x?{k}={v}&next=2", "{k}: {v} next", "({k}={v}) next",
            "{{:{k}=>\"{v}\"}} next", "--{k}={v} next", "{k} = {v} next"]


@pytest.mark.parametrize("word", sorted(set(SECRET_KEYWORDS) | {w.replace("_", " ") for w in DETECT_SECRETS_KEYWORDS}))
def test_every_spelling_in_every_context_is_redacted(word):
    for name in spellings(word.split()):
        assert secret_kind(name) == "strong", name
        for context in CONTEXTS:
            text = context.format(k=name, v=VALUE)
            out = sanitize(text)
            assert VALUE not in out, (text, out)
            if out != "[json omitted]":  # a whole JSON object without a message has nothing for a person
                assert REDACTED in out and "next" in out, (text, out)  # nothing after the value is eaten


def test_plist_and_key_value_attributes():
    for name in ("Password", "SharedSecret", "Challenge", "ClientSecret", "keyMaterial"):
        out = sanitize(f"<key>{name}</key><string>{VALUE}</string><key>SSID</key><string>Corp</string>")
        assert VALUE not in out and "<string>Corp</string>" in out
        out = sanitize(f'<add key="App:{name}" value="{VALUE}"/><add key="Tenant" value="contoso"/>')
        assert VALUE not in out and 'value="contoso"' in out


def test_loose_words_need_a_random_value():
    assert sanitize("partition_key=tenant-42 cache_key=a:b:42") == "partition_key=tenant-42 cache_key=a:b:42"
    assert sanitize("license_key=8c3f1e2d4b5a69788796a5b4c3d2e1f0 ok") == "license_key=[redacted] ok"
    assert sanitize("idempotency_key=3fa85f64-5717-4562-b3fc-2c963f66afa6") == \
        "idempotency_key=3fa85f64-5717-4562-b3fc-2c963f66afa6"


alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SECRET_KEYWORDS), st.integers(0, len(spellings(["a", "b"])) - 1), st.sampled_from(CONTEXTS),
       st.text(st.sampled_from(alnum + "-_+/!@#$%^*~"), min_size=6, max_size=40), st.integers(0, 9))
def test_no_value_of_a_secret_key_survives(word, style, context, value, digit):
    value = value + str(digit)  # values carry a digit, as real ones do (a plain word after "key: " is prose)
    text = context.format(k=spellings(word.split())[style], v=value)
    assert value not in (sanitize(text) or "")


def test_detect_secrets_finds_nothing_in_sanitized_corpus():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings
    noisy = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}  # GUIDs, hosts, request ids
    plugins = [{"name": c.__name__} for c in get_mapping_from_secret_type_to_class().values() if c.__name__ not in noisy]
    with transient_settings({"plugins_used": plugins}):
        flagged_inputs = [e["id"] for e in CORPUS if list(scan_line(e["input"].replace("\n", " ")))]
        assert len(flagged_inputs) >= 15  # the oracle is alive: it sees the secrets in the inputs
        for e in CORPUS:
            found = [(s.type, s.secret_value) for s in scan_line(e["expected"] or "")]
            assert not found, (e["id"], found)
