"""Issue 16, item 2 (identity a reverse proxy asserts): `opsux serve --auth header --trusted-proxy 127.0.0.1`, a real
server on SQLite and PostgreSQL driven with a raw HTTP client and a raw Bokeh websocket. The email in
X-Forwarded-Email is believed only on connections from the trusted proxy's address (127.0.0.1 here; 127.0.0.2 plays
anyone else on the network); a missing header, an unknown email or another user's page token is refused with one
line of text, never a login form."""
from __future__ import annotations

import subprocess, sys

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from security_support import ALICE, BOB, ROOT, BokehSocket, Client, Served, make_world, run

HEADER = "X-Forwarded-Email"
OUTSIDER = "127.0.0.2"                                  # reaches the server directly, not through the proxy


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"header-auth-{request.param}")
    if request.param == "sqlite": db = f"sqlite:///{tmp}/header.sqlite"
    else:
        from pgserver import fresh_database
        db = fresh_database(request.getfixturevalue("pg_url"))
    make_world(db)
    s = Served(tmp, db, "--auth", "header", "--trusted-proxy", "127.0.0.1/32")
    yield s
    s.stop()


def as_proxy(srv, email: str | None, source: str | None = None, **headers) -> Client:
    "A client that sends what the proxy would: the identity header (unless `email` is None)."
    return Client(srv.base, source=source, headers={**({HEADER: email} if email else {}), **headers})


async def socket(srv, token: str, email: str | None, source: str | None = None) -> BokehSocket:
    "A Bokeh websocket carrying the proxy's identity header, from `source`."
    req = HTTPRequest(srv.base.replace("http://", "ws://", 1) + "/operations/ws", request_timeout=30,
                      headers={"Origin": srv.base, **({HEADER: email} if email else {})},
                      network_interface=source)
    ws = BokehSocket(await websocket_connect(req, subprotocols=["bokeh", token], max_message_size=64 * 2**20))
    header, _ = await ws.read()
    assert header["msgtype"] == "ACK", header
    return ws


def refused(status_headers_body, status: int):
    code, headers, body = status_headers_body
    assert code == status, (code, body[:300])
    assert headers["Content-Type"].startswith("text/plain") and body.count("\n") == 1, body
    assert "<form" not in body and "password" not in body.lower()
    return body


def test_the_proxys_user_sees_only_their_tenants(srv):
    alice = as_proxy(srv, ALICE[0].upper())                   # emails match in any case, as at the login form
    token = alice.page_token()
    async def pull():
        ws = await socket(srv, token, ALICE[0])
        doc = await ws.pull_doc(); ws.close()
        return doc
    doc = run(pull())
    assert "Signed in as Alice Archer" in doc and "Contoso" in doc
    assert "Bob" not in doc and "Fabrikam" not in doc


def test_a_header_from_another_address_is_refused(srv):
    body = refused(as_proxy(srv, ALICE[0], source=OUTSIDER).get("/operations"), 403)
    assert "sign-in proxy" in body
    forged = as_proxy(srv, ALICE[0], source=OUTSIDER, **{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
    refused(forged.get("/operations"), 403)                   # naming the proxy as a hop changes nothing
    refused(as_proxy(srv, ALICE[0], source=OUTSIDER).get("/operations/run?id=1"), 403)


def test_missing_header_and_unknown_email_are_refused(srv):
    assert HEADER in refused(as_proxy(srv, None).get("/operations"), 401)
    refused(as_proxy(srv, "mallory@evil.test").get("/operations"), 403)
    refused(as_proxy(srv, "1").get("/operations"), 401)          # not an email: never read as a user id
    both = Client(srv.base).get("/operations", headers={HEADER: f"{BOB[0]}, {ALICE[0]}"})
    refused(both, 401)
    assert as_proxy(srv, ALICE[0]).get("/login")[0] == 404          # no login form to fall back to


def test_a_client_stamped_identity_is_ignored(srv):
    bob = as_proxy(srv, BOB[0], **{"X-Opsux-Identity": ALICE[0]})
    token = bob.page_token()
    async def pull():
        ws = await socket(srv, token, BOB[0])
        doc = await ws.pull_doc(); ws.close()
        return doc
    doc = run(pull())
    assert "Signed in as Bob Baker" in doc and "Alice" not in doc and "Contoso" not in doc


def test_another_users_token_does_not_connect(srv):
    token = as_proxy(srv, ALICE[0]).page_token()
    for email, source in ((BOB[0], None), (None, None), (ALICE[0], OUTSIDER)):
        with pytest.raises(HTTPClientError) as e:             # Bob's header, no header, Alice's from elsewhere
            run(socket(srv, token, email, source))
        assert e.value.code in (401, 403), (email, source, e.value.code)


def test_header_mode_without_trusted_proxy_does_not_start(tmp_path):
    p = subprocess.run([sys.executable, "-m", "opsux.cli", "serve", "--db", f"sqlite:///{tmp_path}/x.sqlite",
                        "--auth", "header", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120,
                       cwd=str(ROOT), env={**__import__("os").environ, "OPSUX_HOME": str(tmp_path)})
    out = (p.stdout + p.stderr).strip()
    assert p.returncode != 0 and "Traceback" not in out, out
    assert len(out.splitlines()) == 1 and "--trusted-proxy" in out, out
