"""Authentication (`opsux.ui.auth`): bind checks, the cookie secret, login throttling, log redaction, and a real
Panel server with opsux users driven over HTTP and in Chromium."""
import http.cookiejar, http.server, json, logging, os, socket, stat, subprocess, sys, textwrap, threading, time, types
import urllib.error, urllib.parse, urllib.request

import pytest

import opsux
from support import free_port
from opsux.ui.auth import (AuthConfigError, RedactingFilter, auth_kwargs, check_bind, cookie_secret,
                        identity_email, install_log_redaction, is_loopback, oidc_endpoints)

SECRET = "t" * 48


# --- check_bind --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"])
def test_auth_none_is_allowed_on_loopback(host):
    assert check_bind("none", host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", None, "192.168.0.10", "10.1.1.1", "myhost.example",
                                  "localhost.evil.example", "128.0.0.1"])
def test_auth_none_is_refused_off_loopback_with_the_fix_in_the_message(host):
    with pytest.raises(AuthConfigError) as e:
        check_bind("none", host)
    msg = str(e.value)
    assert "loopback" in msg and "--host 127.0.0.1" in msg and "--auth basic" in msg
    assert not is_loopback(host)


@pytest.mark.parametrize("auth", ["basic", "oauth"])
def test_login_modes_may_bind_any_host(auth):
    check_bind(auth, "0.0.0.0")


def test_unknown_mode_is_refused():
    with pytest.raises(AuthConfigError, match="none, basic, oauth"):
        check_bind("kerberos", "127.0.0.1")


# --- cookie_secret -----------------------------------------------------------------------------------------

def test_cookie_secret_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPSUX_COOKIE_SECRET", "e" * 40)
    assert cookie_secret(path=tmp_path / "unused") == "e" * 40
    assert not (tmp_path / "unused").exists()


def test_short_cookie_secret_in_environment_is_refused(monkeypatch):
    monkeypatch.setenv("OPSUX_COOKIE_SECRET", "short")
    with pytest.raises(AuthConfigError, match="too short"):
        cookie_secret()


def test_generated_cookie_secret_is_0600_under_opsux_home_and_reused(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSUX_COOKIE_SECRET", raising=False)
    monkeypatch.setenv("OPSUX_HOME", str(tmp_path / "home"))
    old = os.umask(0o022)                       # a permissive umask must not leak into the file mode
    try:
        first = cookie_secret()
    finally:
        os.umask(old)
    f = tmp_path / "home" / "cookie_secret"
    assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert len(first) >= 32 and f.read_text().strip() == first
    assert cookie_secret() == first                          # a later start reuses it
    assert [p.name for p in f.parent.iterdir()] == ["cookie_secret"]   # no temporary files left behind


def test_concurrent_first_starts_agree_on_one_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSUX_COOKIE_SECRET", raising=False)
    path, results = tmp_path / "s", []
    threads = [threading.Thread(target=lambda: results.append(cookie_secret(path=path))) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(results) == 8 and len(set(results)) == 1


def test_secret_file_readable_by_others_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSUX_COOKIE_SECRET", raising=False)
    path = tmp_path / "s"
    cookie_secret(path=path)
    path.chmod(0o640)
    with pytest.raises(AuthConfigError, match="chmod 600"):
        cookie_secret(path=path)


# --- LoginThrottle: tests/test_security_throttle.py (database-backed, concurrent, across processes) ---------------


# --- identity mapping, redaction, OIDC discovery, configuration ----------------------------------------------

def test_identity_email_maps_only_verified_emails():
    assert identity_email("ada@contoso.test", {"user": "ada@contoso.test"}) == "ada@contoso.test"
    assert identity_email("octocat", {"email": "octo@gh.test"}) == "octo@gh.test"
    assert identity_email("ada@contoso.test", {"email_verified": False}) is None
    assert identity_email("guest", {"user": "guest"}) is None
    assert identity_email(None, None) is None


def test_tornado_access_log_never_shows_oauth_codes(caplog):
    install_log_redaction(); install_log_redaction()
    lg = logging.getLogger("tornado.access")
    assert sum(isinstance(f, RedactingFilter) for f in lg.filters) == 1
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        lg.info("%d %s %.2fms", 302, "GET /login?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj (127.0.0.1)", 3.0)
        logging.getLogger("panel.auth").warning("token response: %s", '{"access_token": "eyJhbGciOi.eyJzdWIi.sig"}')
    text = caplog.text
    assert "SplxlOBeZQQYbYS6WxSbIA" not in text and "af0ifjsldkj" not in text and "eyJzdWIi" not in text
    assert "GET /login?code=***&state=***" in text


@pytest.fixture
def discovery_server():
    doc = {"issuer": "http://127.0.0.1", "authorization_endpoint": "https://id.test/authorize",
           "token_endpoint": "https://id.test/token", "userinfo_endpoint": "https://id.test/userinfo",
           "end_session_endpoint": "https://id.test/logout", "jwks_uri": "https://id.test/jwks"}
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(doc).encode() if self.path == "/.well-known/openid-configuration" else b"{}"
            self.send_response(200 if body != b"{}" else 404)
            self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown(); srv.server_close()


def test_oidc_well_known_url_fills_the_generic_provider_endpoints(discovery_server, monkeypatch):
    url = discovery_server + "/.well-known/openid-configuration"
    assert oidc_endpoints(url) == {"AUTHORIZE_URL": "https://id.test/authorize", "TOKEN_URL": "https://id.test/token",
                                   "USER_URL": "https://id.test/userinfo", "LOGOUT_URL": "https://id.test/logout"}
    with pytest.raises(AuthConfigError, match="could not read"):
        oidc_endpoints(discovery_server + "/missing")
    monkeypatch.setenv("OPSUX_OAUTH_PROVIDER", "generic")
    monkeypatch.setenv("OPSUX_OAUTH_KEY", "client-id")
    monkeypatch.setenv("OPSUX_OAUTH_SECRET", "client-secret")
    monkeypatch.setenv("OPSUX_OIDC_WELL_KNOWN", url)
    kw = auth_kwargs(None, "oauth", host="0.0.0.0", secret=SECRET)
    assert kw["oauth_extra_params"]["TOKEN_URL"] == "https://id.test/token"
    assert kw["oauth_key"] == "client-id" and kw["oauth_secret"] == "client-secret"
    assert kw["oauth_jwt_user"] == "email" and "oauth_provider" not in kw and "basic_auth" not in kw
    assert kw["auth_provider"].login_handler.oidc["issuer"] == "http://127.0.0.1"


def test_oauth_without_settings_says_what_to_set(monkeypatch):
    for name in ("OPSUX_OAUTH_PROVIDER", "PANEL_OAUTH_PROVIDER", "OPSUX_OAUTH_KEY", "PANEL_OAUTH_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthConfigError, match="OPSUX_OAUTH_PROVIDER"):
        auth_kwargs(None, "oauth", host="0.0.0.0", secret=SECRET)
    with pytest.raises(AuthConfigError, match="OPSUX_OAUTH_KEY"):
        auth_kwargs(None, "oauth", host="0.0.0.0", secret=SECRET, oauth_provider="google")


# --- a real server -----------------------------------------------------------------------------------------

SERVER = textwrap.dedent("""
    import logging, sys, panel as pn, opsux
    from opsux.ui.auth import LoginThrottle, auth_kwargs, current_user
    db, port, mode, as_user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
    ops = opsux.connect(db)
    logging.basicConfig(level=logging.DEBUG)          # everything a verbose deployment would write
    kw = auth_kwargs(ops, mode, host="127.0.0.1", as_user=as_user,
                     throttle=LoginThrottle(max_failures=3, window=300, lockout=600))
    def app():
        user = current_user(ops, as_user)
        return pn.pane.Str(f"Signed in as {user.name}" if user else "Access denied", name="who")
    pn.serve({"/": app}, port=port, address="127.0.0.1", websocket_origin=f"127.0.0.1:{port}",
             show=False, start=True, verbose=False, **kw)
""")


def _start_server(tmp_path, db, mode, as_user="", port=None):
    port = port or free_port()
    script = tmp_path / f"serve_{mode}.py"
    script.write_text(SERVER)
    log = open(tmp_path / f"server_{mode}.log", "w")
    env = {**os.environ, "OPSUX_COOKIE_SECRET": SECRET, "OPSUX_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, str(script), db, str(port), mode, as_user],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / f"server_{mode}.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    db = f"sqlite:///{tmp}/auth.sqlite"
    ops = opsux.connect(db)
    t = ops.directory.add_tenant("Contoso")
    ops.directory.add_user("Ada Lovelace", email="ada@contoso.test", tenants=[t], password="correct horse battery")
    ops.directory.add_user("Bob Builder", email="bob@contoso.test", tenants=[t], password="bob's long password")
    ops.close()
    proc, base = _start_server(tmp, db, "basic")
    yield base, tmp
    proc.terminate()
    try: proc.wait(10)
    except subprocess.TimeoutExpired: proc.kill()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None


def _client():
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    def call(url, data=None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            r = opener.open(url, body, timeout=30)
        except urllib.error.HTTPError as e:
            r = e
        return r.status if hasattr(r, "status") else r.code, r.headers, r.read().decode("utf-8", "replace")
    return call, jar


def _sign_in(call, base, email, password, next_="%2F"):
    "GET the login form (its CSRF token), then POST it."
    import re
    status, _, body = call(base + f"/login?next={next_}")
    token = re.search(r'name="_csrf" value="([^"]+)"', body).group(1)
    return call(base + "/login", {"username": email, "password": password, "_csrf": token})


def test_unauthenticated_request_is_sent_to_the_login_page(server):
    base, _ = server
    call, _ = _client()
    status, headers, _ = call(base + "/")
    assert status == 302 and "login" in headers["Location"]
    status, headers, body = call(base + "/login?next=%2F")
    assert status == 200 and 'name="password"' in body and "Sign in to opsux" in body
    status, headers, body = call(base + "/login?next=https%3A%2F%2Fevil.example%2F")   # no open redirect:
    assert status == 200 and 'name="_csrf"' in body                   # the form, and `next` falls back to a page


def test_right_password_sets_httponly_samesite_cookie_and_opens_the_app(server):
    base, _ = server
    call, jar = _client()
    status, headers, _ = _sign_in(call, base, "ada@contoso.test", "correct horse battery")
    assert status == 302 and headers["Location"] == "/"
    user_cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("user=")]
    assert len(user_cookie) == 1
    assert "HttpOnly" in user_cookie[0] and "SameSite=Lax" in user_cookie[0]
    assert "correct horse" not in " ".join(headers.get_all("Set-Cookie"))
    status, _, body = call(base + "/")
    assert status == 200 and "bokeh" in body.lower()


def _session_token_payload(html):
    import re
    from bokeh.util.token import get_token_payload
    m = re.search(r'"token":"([^"]+)"', html)
    assert m, "no session token in the page"
    return get_token_payload(m.group(1))


def test_page_never_carries_the_session_cookie_and_a_sent_identity_header_is_overwritten(server):
    base, _ = server
    call, jar = _client()
    _sign_in(call, base, "ada@contoso.test", "correct horse battery")
    user_cookie = next(c.value for c in jar if c.name == "user")
    req = urllib.request.Request(base + "/", headers={"X-Opsux-Identity": "bob@contoso.test",
                                                      "Cookie": "; ".join(f"{c.name}={c.value}" for c in jar)})
    html = urllib.request.urlopen(req, timeout=30).read().decode()
    assert user_cookie not in html
    payload = _session_token_payload(html)
    assert "user" not in payload["cookies"] and "id_token" not in payload["cookies"]
    assert "Cookie" not in payload["headers"]
    assert payload["headers"]["X-Opsux-Identity"] == "ada@contoso.test"


def test_wrong_passwords_are_rejected_then_throttled_even_for_the_right_password(server):
    base, tmp = server
    call, jar = _client()
    for _ in range(3):                                   # the server's throttle allows 3 attempts per (ip, email)
        status, _, body = _sign_in(call, base, "bob@contoso.test", "guess")
        assert status == 401 and "Wrong email or password." in body
        assert not any(c.name == "user" for c in jar)
    status, headers, body = _sign_in(call, base, "bob@contoso.test", "guess")
    assert status == 429 and "Too many sign-in attempts" in body and int(headers["Retry-After"]) > 0
    status, _, body = _sign_in(call, base, "bob@contoso.test", "bob's long password")
    assert status == 429 and not any(c.name == "user" for c in jar)
    # the lock is per (ip, email): Ada can still sign in from the same address
    status, _, _ = _sign_in(call, base, "ada@contoso.test", "correct horse battery")
    assert status == 302
    log = (tmp / "server_basic.log").read_text()
    assert "guess" not in log and "bob's long password" not in log and "correct horse" not in log


def test_forged_or_unknown_identities_get_no_user(server):
    from tornado.web import create_signed_value
    base, _ = server
    forged = create_signed_value("not-the-server-secret" * 3, "user", "ada@contoso.test").decode()
    req = urllib.request.Request(base + "/", headers={"Cookie": f"user={forged}"})
    opener = urllib.request.build_opener(NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(req, timeout=30)
    assert e.value.code == 302 and "login" in e.value.headers["Location"]


def _close_contexts(browser):
    for ctx in list(browser.contexts): ctx.close()


def test_browser_login_shows_the_user_then_logout_requires_login_again(server, browser):
    from playwright.sync_api import expect
    base, _ = server
    try:
        page = browser.new_page()
        page.goto(base + "/")
        expect(page.locator("#login-submit")).to_be_visible()
        assert "/login" in page.url
        page.fill("#username", "ada@contoso.test"); page.fill("#password", "not it")
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
        page.fill("#password", "correct horse battery")
        page.click("#login-submit")
        expect(page.get_by_text("Signed in as Ada Lovelace")).to_be_visible(timeout=30_000)
        cookie = next(c for c in page.context.cookies() if c["name"] == "user")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
        assert page.evaluate("document.cookie").find("user=") == -1    # scripts cannot read the session
        page.goto(base + "/logout")
        page.click("#logout-submit")                   # sign-out is a POST with the form's token
        expect(page.locator("#logout-message")).to_be_visible()
        assert not any(c["name"] == "user" for c in page.context.cookies())
        page.goto(base + "/")
        expect(page.locator("#login-submit")).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_have_count(0)
    finally:
        _close_contexts(browser)


def test_browser_signed_cookie_for_an_unknown_identity_shows_access_denied(server, browser):
    from playwright.sync_api import expect
    from tornado.web import create_signed_value
    base, _ = server
    try:
        ctx = browser.new_context()
        value = create_signed_value(SECRET, "user", "mallory@elsewhere.test").decode()
        session = create_signed_value(SECRET, "opsux_session", "0|mallory@elsewhere.test").decode()
        ctx.add_cookies([{"name": "user", "value": value, "url": base + "/"},
                         {"name": "opsux_session", "value": session, "url": base + "/"}])
        page = ctx.new_page()
        page.goto(base + "/")
        expect(page.get_by_text("Access denied")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Signed in as")).to_have_count(0)
    finally:
        _close_contexts(browser)


def test_auth_none_acts_as_the_given_user_without_login(tmp_path, browser):
    from playwright.sync_api import expect
    db = f"sqlite:///{tmp_path}/none.sqlite"
    ops = opsux.connect(db)
    t = ops.directory.add_tenant("Contoso")
    ops.directory.add_user("Grace Hopper", email="grace@contoso.test", tenants=[t])
    ops.close()
    proc, base = _start_server(tmp_path, db, "none", "grace@contoso.test")
    try:
        page = browser.new_page()
        page.goto(base + "/")
        expect(page.get_by_text("Signed in as Grace Hopper")).to_be_visible(timeout=30_000)
    finally:
        _close_contexts(browser); proc.terminate(); proc.wait(10)


# --- OAuth / OIDC against a local identity provider ------------------------------------------------------------

def _b64(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def idp():
    "A tiny OpenID Connect provider on loopback: it signs in whoever `idp.email` names."
    state = types.SimpleNamespace(email=None, codes={}, base=None, token_requests=0)
    class H(http.server.BaseHTTPRequestHandler):
        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            u = urllib.parse.urlsplit(self.path); q = dict(urllib.parse.parse_qsl(u.query))
            if u.path == "/.well-known/openid-configuration":
                return self._json({"issuer": state.base, "authorization_endpoint": state.base + "/authorize",
                                   "token_endpoint": state.base + "/token", "userinfo_endpoint": state.base + "/userinfo"})
            if u.path == "/authorize" and q.get("client_id") == "opsux-test":
                code = "code-" + os.urandom(8).hex(); state.codes[code] = state.email
                self.send_response(302)
                self.send_header("Location", q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]}))
                return self.end_headers()
            self._json({"error": "not_found"}, 404)
        def do_POST(self):
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            state.token_requests += 1
            email = state.codes.pop(form.get("code"), None)
            if form.get("client_secret") != "idp-client-secret" or email is None:
                return self._json({"error": "invalid_grant"}, 400)
            claims = {"iss": state.base, "aud": "opsux-test", "sub": "sub-" + email, "email": email,
                      "email_verified": True, "exp": int(time.time()) + 3600}
            import hashlib, hmac
            signed = ".".join([_b64(b'{"alg":"HS256"}'), _b64(json.dumps(claims).encode())])
            sig = hmac.new(b"idp-client-secret", signed.encode(), hashlib.sha256).digest()
            id_token = signed + "." + _b64(sig)
            self._json({"access_token": "at-" + os.urandom(8).hex(), "id_token": id_token, "token_type": "Bearer",
                        "expires_in": 3600})
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    state.base = f"http://127.0.0.1:{srv.server_port}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield state
    srv.shutdown(); srv.server_close()


def test_oauth_generic_oidc_maps_the_email_to_an_opsux_user_and_denies_strangers(tmp_path, idp, monkeypatch, browser):
    from playwright.sync_api import expect
    db = f"sqlite:///{tmp_path}/oauth.sqlite"
    ops = opsux.connect(db)
    t = ops.directory.add_tenant("Contoso")
    ops.directory.add_user("Ada Lovelace", email="ada@contoso.test", tenants=[t])
    ops.close()
    port = free_port()
    monkeypatch.setenv("OPSUX_OAUTH_PROVIDER", "generic")
    monkeypatch.setenv("OPSUX_OAUTH_KEY", "opsux-test")
    monkeypatch.setenv("OPSUX_OAUTH_SECRET", "idp-client-secret")
    monkeypatch.setenv("OPSUX_OIDC_WELL_KNOWN", idp.base + "/.well-known/openid-configuration")
    monkeypatch.setenv("OPSUX_OAUTH_REDIRECT_URI", f"http://127.0.0.1:{port}/login")
    proc, base = _start_server(tmp_path, db, "oauth", port=port)
    try:
        idp.email = "ada@contoso.test"
        ctx = browser.new_context(); page = ctx.new_page()
        page.goto(base + "/")
        expect(page.get_by_text("Signed in as Ada Lovelace")).to_be_visible(timeout=30_000)
        cookies = {c["name"]: c for c in ctx.cookies()}
        assert cookies["user"]["httpOnly"] and cookies["user"]["sameSite"] == "Lax"
        assert cookies["access_token"]["httpOnly"] and cookies["access_token"]["sameSite"] == "Lax"
        page.goto(base + "/logout")
        page.click("#logout-submit")
        expect(page.locator("#logout-message")).to_be_visible()
        assert not {"user", "access_token", "id_token"} & {c["name"] for c in ctx.cookies()}

        idp.email = "stranger@elsewhere.test"          # a valid identity that is not an opsux user
        ctx2 = browser.new_context(); page2 = ctx2.new_page()
        page2.goto(base + "/")
        expect(page2.get_by_text("Access denied")).to_be_visible(timeout=30_000)
        expect(page2.get_by_text("Signed in as")).to_have_count(0)
        assert idp.token_requests == 2
    finally:
        _close_contexts(browser); proc.terminate(); proc.wait(10)
    log = (tmp_path / "server_oauth.log").read_text()
    assert "/login?code=***&state=***" in log                       # the callback was logged, masked
    assert "idp-client-secret" not in log and "code-" not in log and "at-" not in log


def test_as_user_only_applies_to_auth_none(tmp_path):
    ops = opsux.connect(f"sqlite:///{tmp_path}/as.sqlite")
    try:
        ops.directory.add_user("Ada", email="ada@contoso.test")
        assert auth_kwargs(ops, "none", host="::1", as_user="ADA@contoso.test") == {}
        with pytest.raises(AuthConfigError, match="--as only applies to --auth none"):
            auth_kwargs(ops, "basic", host="0.0.0.0", as_user="ada@contoso.test", secret=SECRET)
        with pytest.raises(AuthConfigError, match="no opsux user"):
            auth_kwargs(ops, "none", host="127.0.0.1", as_user="eve@contoso.test")
        with pytest.raises(AuthConfigError, match="loopback"):
            auth_kwargs(ops, "none", host="0.0.0.0", as_user="ada@contoso.test")
    finally:
        ops.close()
