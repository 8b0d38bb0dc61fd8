"""Issue 12, items 2, 9 and 11 with a raw HTTP + Bokeh-websocket client against `opsux serve --auth basic`, on SQLite
and PostgreSQL: a session token or session id is bound to the signed-in user; sign-out ends the session on the server
(a copied cookie, the page's token and websockets opened before are refused or closed, in every process); one user
cannot open pages or websockets without limit."""
from __future__ import annotations

import asyncio, time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.cookies import SimpleCookie
from itertools import count

import pytest
from bokeh.util.token import get_session_id
from tornado.httpclient import HTTPClientError
from tornado.httputil import format_timestamp
from tornado.web import create_signed_value

from security_support import ALICE, BOB, SECRET, BokehSocket, Client, Served, expired, make_world, run


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request, tmp_path_factory):
    "Two `opsux serve --auth basic` processes on one database (as behind a proxy, or --num-procs)."
    tmp = tmp_path_factory.mktemp(f"sessions-{request.param}")
    if request.param == "sqlite": db = f"sqlite:///{tmp}/sessions.sqlite"
    else:
        from pgserver import fresh_database
        db = fresh_database(request.getfixturevalue("pg_url"))
    make_world(db)
    limit = ("--page-limit", "10/2")                        # tighter than the default: the flood test counts on it
    one = Served(tmp, db, "--auth", "basic", *limit, name="one")
    two = Served(tmp, db, "--auth", "basic", *limit, name="two")
    yield one, two
    one.stop(); two.stop()


def signed_in(srv, who):
    c = Client(srv.base)
    status, headers, _ = c.sign_in(*who)
    assert status == 302, status
    return c


def test_the_test_client_drops_a_cookie_by_its_attributes_never_its_text():
    "CI's flake: a signed cookie whose hex signature held '1970' was taken for a deleted one (then 302 to /login)."
    now = int(time.time())
    value = next(v for t in count(now) if "1970" in (v := create_signed_value(SECRET, "user", ALICE[0],
                                                                               clock=lambda: t).decode()))
    year = timedelta(days=365).total_seconds()
    def morsel(v, **attrs):
        tail = "".join(f"; {k}={a}" for k, a in attrs.items())
        return SimpleCookie(f'user="{v}"; Path=/{tail}')["user"]
    assert not expired(morsel(value, expires=format_timestamp(now + 30 * 86400)))        # as set_secure_cookie sets it
    assert not expired(morsel(value))                                                   # a session cookie
    assert expired(morsel("", expires=format_timestamp(now - year), **{"Max-Age": 0}))  # as clear_cookie clears it
    assert expired(morsel(value, expires=format_timestamp(now - year)))


def test_another_users_token_does_not_connect(pair):
    srv = pair[0]
    alice, bob = signed_in(srv, ALICE), signed_in(srv, BOB)
    token = alice.page_token()
    with pytest.raises(HTTPClientError) as e:                    # Alice's token, Bob's cookie
        run(BokehSocket.open(srv.base, "/operations", token, cookies=bob.cookies))
    assert e.value.code == 403
    with pytest.raises(HTTPClientError):                         # Alice's token without any cookie
        run(BokehSocket.open(srv.base, "/operations", token))
    async def own():                                             # the control: Alice's token with Alice's cookie
        ws = await BokehSocket.open(srv.base, "/operations", token, cookies=alice.cookies)
        doc = await ws.pull_doc(); ws.close()
        return doc
    doc = run(own())
    assert "Signed in as Alice Archer" in doc and "Bob" not in doc
    assert "ox-runs" in doc                  # her runs table: its markup is read as text (`readable`), not base64


def test_another_users_session_id_is_refused(pair):
    srv = pair[0]
    alice, bob = signed_in(srv, ALICE), signed_in(srv, BOB)
    sid = get_session_id(alice.page_token())
    for path, headers in ((f"/operations?bokeh-session-id={sid}", {}), ("/operations", {"Bokeh-Session-Id": sid})):
        status, _, body = bob.get(path, headers=headers)
        assert status == 403 and '"token"' not in body and "Alice" not in body, path


def test_sign_out_ends_the_session_everywhere(pair):
    one, two = pair
    alice = signed_in(one, ALICE)
    copied = Client(two.base); copied.cookies = dict(alice.cookies)        # the cookie, copied to another client
    token_one, token_two = alice.page_token(), copied.page_token()
    async def scenario():
        here = await BokehSocket.open(one.base, "/operations", token_one, cookies=alice.cookies)
        there = await BokehSocket.open(two.base, "/operations", token_two, cookies=copied.cookies)
        assert "Alice Archer" in await here.pull_doc() and "Alice Archer" in await there.pull_doc()
        status, _, body = await asyncio.to_thread(alice.sign_out)
        assert status == 200 and "signed out" in body.lower()
        return await here.closed_within(10), await there.closed_within(15)
    assert run(scenario()) == (True, True)        # this process at once; the other one within its poll
    status, headers, _ = copied.get("/operations")          # the copied cookie no longer opens a page
    assert status == 302 and "/login" in headers["Location"]
    with pytest.raises(HTTPClientError) as e:               # nor does the page's token, with that cookie
        run(BokehSocket.open(two.base, "/operations", token_two, cookies=copied.cookies))
    assert e.value.code == 403
    again = signed_in(one, ALICE)                           # signing in again works
    assert again.get("/operations")[0] == 200


def test_logout_needs_the_form_not_a_get(pair):
    srv = pair[0]
    alice = signed_in(srv, ALICE)
    status, _, body = alice.get("/logout")                  # a link or image: only the question
    assert status == 200 and 'id="logout-submit"' in body
    assert alice.get("/operations")[0] == 200
    assert alice.post("/logout", {"_csrf": "forged"})[0] == 403
    assert alice.post("/logout", {})[0] == 403
    assert alice.get("/operations")[0] == 200


def test_one_user_cannot_open_pages_without_limit(pair):
    srv = pair[0]
    alice, bob = signed_in(srv, ALICE), signed_in(srv, BOB)
    def page(_): return Client.get(alice, "/operations", timeout=120)
    with ThreadPoolExecutor(50) as pool:
        opened = list(pool.map(page, range(50)))
        while_flooded = bob.get("/operations", timeout=120)
    codes = [s for s, _, _ in opened]
    assert codes.count(429) >= 35 and set(codes) <= {200, 429}, codes
    assert all(int(h["Retry-After"]) >= 1 for s, h, _ in opened if s == 429)
    assert while_flooded[0] == 200                          # Bob's own budget is untouched


def test_one_session_cannot_hold_unlimited_websockets(pair):
    srv = pair[0]
    bob = signed_in(srv, BOB)
    token = bob.page_token()
    async def flood():
        socks, refused = [], 0
        for _ in range(24):
            try: socks.append(await BokehSocket.open(srv.base, "/operations", token, cookies=bob.cookies))
            except HTTPClientError as e:
                assert e.code == 403; refused += 1
        for s in socks: s.close()
        return len(socks), refused
    assert run(flood()) == (20, 4)
