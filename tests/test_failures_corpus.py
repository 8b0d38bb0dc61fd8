"""The failure-message corpus: realistic messages, each with its exact sanitized form."""
import json
from pathlib import Path

import pytest

from opsux.rules.failures import MAX_MESSAGE_LENGTH, sanitize_failure_message

CORPUS = json.loads((Path(__file__).parent / "data" / "failure_corpus.json").read_text())

# Secret values planted in the corpus inputs; none may appear in any expected or actual output.
PLANTED = ["hunter2", "S3cr3t!", "P@ssw0rd", "Summer2024", "s3cr3tpass", "Tr0ub4dor", "AKIAIOSFODNN7EXAMPLE",
           "ASIAY34FZKBOKMUTVV7A", "wJalrXUtnFEMI", "Eby8vdM02xNOcq", "5x8y2ZkqA9bC", "uNmXxZ4", "fe5f80f77d5f",
           "IQoJb3JpZ2lu", "7a9b8c6d5e4f", "eyJ0eXAiOiJKV1Qi", "0.AAAAxyzRefresh", "abc8Q~Zx9y", "sk_live_", "ghp_16C7",
           "xoxb-2048", "AIzaSyD-9tSrke", "8c3f1e2d4b5a", "3a4b5c6d7e8f90a1", "YWRtaW46", "8f14e45fceea", "Xy7PqLm2",
           "abcdefghij0123456789", "a81b2c3d4e5f", "9f8e7d6c5b4a", "MIIEowIBAAKCAQEA", "MIIEvQIBADAN", "b3BlbnNzaC1rZXk",
           "1a2b3c4d5e6f7a8b9c0d",
           # Laravel/Guzzle, Spring, ASP.NET, Go, axios, Faraday, Wi-Fi/VPN/MDM profiles
           "Winter2026!", "smtp-pa55", "Zm9vYmFyYmF6cXV4", "Tr0ub4dor-3", "ya29.a0AfH6SMBx", "Zx8~Qq.abcdef",
           "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1", "Tr0ub4dor-9", "9f8e7d6c5b4a3928", "c2lnbmF0dXJlMTIz", "AbC123dEf456",
           "Zx9-vW2u-T4rQ5p", "rk_live_51HxYz", "CorpWifi!2024", "djNyeS1zM2NyZXQ", "3A1F09C2B7D54E68",
           "yAnz5TF+lXXJte14", "FpCyhws9cxwWoV4x", "6acef03f62675b4b", "J4mf-Pa55", "v3ry-s3cret-psk"]


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 122  # 82 before the ecosystems below were added, plus at least 40
    assert len({e["id"] for e in CORPUS}) == len(CORPUS)
    sources = {e["source"] for e in CORPUS}
    for needed in ("benign", "graph", "requests", "httpx", "aiohttp", "psycopg", "sqlalchemy", "pyodbc",
                   "boto3", "azure", "google", "traceback", "html", "xml", "laravel", "guzzle", "spring", "aspnet",
                   "go", "axios", "faraday", "profile"):
        assert needed in sources, needed


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_corpus_entry(entry):
    got = sanitize_failure_message(entry["input"])
    assert got == entry["expected"]
    assert sanitize_failure_message(got) == got
    if got is not None:
        assert len(got) <= MAX_MESSAGE_LENGTH and "\n" not in got


def test_no_planted_secret_survives():
    planted_in_inputs = [p for p in PLANTED if any(p in e["input"] for e in CORPUS)]
    assert planted_in_inputs == PLANTED  # the list is about this corpus, not about nothing
    for e in CORPUS:
        for p in PLANTED:
            assert p not in (e["expected"] or ""), (e["id"], p)


def test_benign_entries_are_unchanged_apart_from_whitespace():
    for e in CORPUS:
        if e["source"] == "benign":
            assert e["expected"] == " ".join(e["input"].split()), e["id"]


STACK_SOURCES = ("laravel", "guzzle", "spring", "aspnet", "go", "axios", "faraday")
FRAME_MARKS = ("#0 ", "{main}", "\tat ", "    at ", "goroutine ", ".go:", ":in '", ":in `", "from /", "--- End of",
               "Stack trace:", "[stacktrace]", "common frames omitted", ".php:", ".java:", ".cs:line")


def test_no_stack_frame_survives():
    for e in CORPUS:
        if e["source"] in STACK_SOURCES and e["expected"]:
            for mark in FRAME_MARKS:
                assert mark not in e["expected"], (e["id"], mark)
