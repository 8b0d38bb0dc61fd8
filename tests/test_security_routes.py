"""Issue 12, items 1, 6, 10 and 11 over raw HTTP/websockets against a real `opsux serve`: only opsux's routes exist
(nothing is imported from a URL), Host names are checked on every request and websocket (DNS rebinding), every
response carries the security headers, no wildcard CORS, a hostile `next=` cannot hang a request, probes."""
from __future__ import annotations

import pytest
from tornado.httpclient import HTTPClientError

from security_support import ALICE, BOB, BokehSocket, Client, Served, basic_world, make_world, run


@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    yield from basic_world(tmp_path_factory, "routes")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    "--auth none (the loopback-only mode the DNS-rebinding attack reads)."
    tmp = tmp_path_factory.mktemp("none")
    db = f"sqlite:///{tmp}/none.sqlite"
    make_world(db)
    srv = Served(tmp, db, "--as", ALICE[0])
    yield srv
    srv.stop()


def test_hostile_next_never_hangs_or_escapes(basic):
    c = Client(basic.base)
    for nxt in ("%E3%80%80", "%2F%2F%2Fevil.example%2Fphish", "%2F%5Cevil.example", "https%3A%2F%2Fevil.example",
                "%2Foperations%E3%80%80", "%00"):
        status, _, body = c.get(f"/login?next={nxt}", timeout=15)
        assert status == 200 and "Sign in to opsux" in body, nxt
        status, h, _ = c.sign_in(*ALICE, token=c.form_token(f"/login?next={nxt}"))
        assert status == 302 and h["Location"] == "/operations", (nxt, h["Location"])


HOSTILE = ["/components/unittest.__main__/x/_css/y", "/components/this/x/_css/y", "/components/os/path/_css/x",
           "/components/panel.io.server/ComponentResourceHandler/_css/y", "/operations/autoload.js?bokeh-autoload-element=x",
           "/operations/metadata", "/operations/static/js/bokeh.min.js", "/rest/session_info", "/liveness",
           "/admin", "/x", "/operations/run/autoload.js"]


@pytest.mark.parametrize("signed_in", [False, True])
def test_unneeded_routes_answer_404_and_import_nothing(basic, signed_in):
    c = Client(basic.base)
    if signed_in: assert c.sign_in(*ALICE)[0] == 302
    for path in HOSTILE:
        status, headers, body = c.get(path)
        assert status == 404, (path, status)
        assert "Access-Control-Allow-Origin" not in headers
    assert c.get("/static/../../etc/passwd")[0] in (403, 404)     # Tornado's static handler stays in its folder
    assert basic.proc.poll() is None                        # before: `unittest.__main__` made the process exit (2)
    text = basic.text()
    assert "Ran 0 tests" not in text and "Zen of Python" not in text and "Beautiful is better" not in text
    assert Client(basic.base).get("/healthz")[0] == 200


def test_the_routes_that_remain_require_what_their_page_requires(basic):
    c = Client(basic.base)
    for path in ("/operations", "/operations/run?id=1"):
        status, headers, _ = c.get(path)
        assert status == 302 and "/login" in headers["Location"], path
    assert c.get("/")[0] in (301, 302)
    assert c.get("/static/js/bokeh.min.js")[0] == 200            # Bokeh's own file, the same for everyone
    assert c.get("/login")[0] == 200
    assert c.get("/healthz")[0] == 200 and c.get("/readyz")[0] == 200


def test_client_chosen_session_ids_are_refused(basic):
    a = Client(basic.base); a.sign_in(*ALICE)
    for path, headers in (("/operations?bokeh-session-id=abc", {}), ("/operations?bokeh-token=abc", {}),
                          ("/operations", {"Bokeh-Session-Id": "abc"})):
        status, _, body = a.get(path, headers=headers)
        assert status == 403 and '"token"' not in body, path


def test_every_response_carries_the_security_headers(basic):
    c = Client(basic.base)
    c.sign_in(*ALICE)
    for path in ("/operations", "/login", "/static/js/bokeh.min.js", "/nope", "/healthz"):
        status, h, _ = c.get(path)
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
        script_src = next(d for d in csp.split("; ") if d.startswith("script-src"))
        assert "'unsafe-inline'" not in script_src, path
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff", path
        assert h["Referrer-Policy"] == "same-origin", path
        assert "Strict-Transport-Security" not in h, path          # plain http: no HSTS
    _, h, body = c.get("/operations")
    assert "'sha256-" in h["Content-Security-Policy"]               # the page's own inline scripts, by hash


def test_dns_rebinding_host_is_refused_on_http_and_websocket(open_server):
    srv = open_server
    evil = f"rebound.evil.example:{srv.port}"
    status, _, body = Client(srv.base).get("/operations", headers={"Host": evil})
    assert status == 421 and "Alice" not in body
    assert Client(srv.base).get("/operations/run?id=1", headers={"Host": evil})[0] == 421
    token = Client(srv.base).page_token()                           # a token got the normal way…
    with pytest.raises(HTTPClientError) as e:                       # …used from a rebound name
        run(BokehSocket.open(srv.base, "/operations", token, host=evil, origin=f"http://{evil}"))
    assert e.value.code == 421
    async def control():                                            # the same token, the real name: connects
        ws = await BokehSocket.open(srv.base, "/operations", token)
        doc = await ws.pull_doc(); ws.close()
        return doc
    assert "Alice Archer" in run(control())


def test_probes_answer_without_a_session(basic):
    status, h, body = Client(basic.base).get("/healthz", headers={"Host": "10.9.9.9"})
    assert status == 200 and '"ok"' in body and h["Cache-Control"] == "no-store"
    status, _, body = Client(basic.base).get("/readyz")
    assert status == 200 and '"ready"' in body
