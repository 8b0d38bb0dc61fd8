"""Issue 12, item 7: OIDC sign-in against a local identity provider that signs its ID tokens (RS256, a key generated
here): a verified email is required, the first sign-in binds the user to issuer + sub, a different sub with the same
email is refused later, and unsigned, forged, foreign or expired tokens sign nobody in. SQLite and PostgreSQL."""
from __future__ import annotations

import base64, hashlib, http.server, json, secrets, threading, time, types, urllib.parse

import pytest
from bokeh.util.token import get_token_payload

from support import wait_until, free_port
from security_support import Client, Served, TOKEN
from opsux.ui.auth import rs256_valid


# ------------------------------------------------------------------------------ RSA, just enough to sign
def _probable_prime(n: int) -> bool:
    if any(n % p == 0 for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)): return False
    d, r = n - 1, 0
    while d % 2 == 0: d, r = d // 2, r + 1
    for _ in range(24):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1): continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1: break
        else: return False
    return True


def rsa_key(bits: int = 2048) -> dict:
    "A fresh RSA key: {'n', 'e', 'd'}."
    e = 65537
    while True:
        p, q = (next(c for c in iter(lambda: secrets.randbits(bits // 2) | (3 << bits // 2 - 2) | 1, None)
                     if _probable_prime(c)) for _ in range(2))
        phi = (p - 1) * (q - 1)
        if p != q and phi % e: return {"n": p * q, "e": e, "d": pow(e, -1, phi)}


def _b64(data: bytes) -> str: return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(key: dict, kid: str) -> dict:
    n = key["n"].to_bytes((key["n"].bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": _b64(n), "e": _b64(b"\x01\x00\x01")}


def sign_rs256(claims: dict, key: dict, kid: str, alg: str = "RS256") -> str:
    signed = f"{_b64(json.dumps({'alg': alg, 'kid': kid}).encode())}.{_b64(json.dumps(claims).encode())}"
    if alg == "none": return signed + "."
    k = (key["n"].bit_length() + 7) // 8
    t = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(signed.encode()).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return signed + "." + _b64(pow(int.from_bytes(em, "big"), key["d"], key["n"]).to_bytes(k, "big"))


@pytest.fixture(scope="module")
def keys():
    return rsa_key(), rsa_key()          # the provider's key, and an attacker's


def test_rs256_verification_accepts_the_key_and_nothing_else(keys):
    good, other = keys
    token = sign_rs256({"sub": "x"}, good, "k1")
    head, body, sig = token.split(".")
    signed = f"{head}.{body}".encode()
    sig = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    assert rs256_valid(signed, sig, jwk(good, "k1"))
    assert not rs256_valid(signed, sig, jwk(other, "k1"))
    assert not rs256_valid(signed + b"x", sig, jwk(good, "k1"))
    assert not rs256_valid(signed, sig[:-1] + bytes([sig[-1] ^ 1]), jwk(good, "k1"))


# ------------------------------------------------------------------------------ the provider
@pytest.fixture(scope="module")
def idp(keys):
    "An OIDC provider on loopback; `idp.next` decides the claims (and key/alg) of the next ID token it issues."
    state = types.SimpleNamespace(base=None, codes={}, next=None, key=keys[0])
    class H(http.server.BaseHTTPRequestHandler):
        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            u = urllib.parse.urlsplit(self.path); q = dict(urllib.parse.parse_qsl(u.query))
            if u.path == "/.well-known/openid-configuration":
                return self._json({"issuer": state.base, "authorization_endpoint": state.base + "/authorize",
                                   "token_endpoint": state.base + "/token", "jwks_uri": state.base + "/jwks"})
            if u.path == "/jwks": return self._json({"keys": [jwk(state.key, "k1")]})
            if u.path == "/authorize" and q.get("client_id") == "opsux-oidc":
                code = "code-" + secrets.token_hex(8); state.codes[code] = state.next
                self.send_response(302)
                self.send_header("Location", q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]}))
                return self.end_headers()
            self._json({"error": "not_found"}, 404)
        def do_POST(self):
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            spec = state.codes.pop(form.get("code"), None)
            if form.get("client_secret") != "oidc-client-secret" or spec is None:
                return self._json({"error": "invalid_grant"}, 400)
            claims = {"iss": state.base, "aud": "opsux-oidc", "exp": int(time.time()) + 600, **spec["claims"]}
            token = sign_rs256(claims, spec.get("key", state.key), "k1", spec.get("alg", "RS256"))
            self._json({"access_token": "at-" + secrets.token_hex(8), "id_token": token, "token_type": "Bearer",
                        "expires_in": 600})
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    state.base = f"http://127.0.0.1:{srv.server_port}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield state
    srv.shutdown(); srv.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def oidc_server(request, idp, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"oidc-{request.param}")
    if request.param == "sqlite": db = f"sqlite:///{tmp}/oidc.sqlite"
    else:
        from pgserver import fresh_database
        db = fresh_database(request.getfixturevalue("pg_url"))
    from opsux.store.ops import connect
    ops = connect(db)
    t = ops.directory.add_tenant("Contoso")
    for name, email in (("Ada Lovelace", "ada@contoso.test"), ("Bea Bell", "bea@contoso.test"),
                        ("Cy Cole", "cy@contoso.test")):
        ops.directory.add_user(name, email=email, tenants=[t])
    ops.close()
    port = free_port()
    env = {"OPSUX_OAUTH_PROVIDER": "generic", "OPSUX_OAUTH_KEY": "opsux-oidc",
           "OPSUX_OAUTH_SECRET": "oidc-client-secret",
           "OPSUX_OIDC_WELL_KNOWN": idp.base + "/.well-known/openid-configuration",
           "OPSUX_OAUTH_REDIRECT_URI": f"http://127.0.0.1:{port}/login"}
    srv = Served(tmp, db, "--auth", "oauth", port=port, env=env)
    yield srv
    srv.stop()


def sign_in(srv, idp, claims: dict, **spec):
    "The whole code flow for an ID token with `claims`; returns (callback status, identity on /operations or None)."
    idp.next = {"claims": claims, **spec}
    c = Client(srv.base)
    status, h, _ = c.get("/login?next=%2Foperations")
    assert status == 302 and h["Location"].startswith(idp.base + "/authorize"), (status, h.get("Location"))
    back = Client(idp.base).get(h["Location"][len(idp.base):])[1]["Location"]
    status, _, _ = c.get(back[len(srv.base):])
    page_status, _, body = c.get("/operations")
    if page_status != 200: return status, None
    return status, get_token_payload(TOKEN.search(body).group(1))["headers"]["X-Opsux-Identity"]


def test_oidc_requires_a_verified_email_and_binds_issuer_and_sub(oidc_server, idp, keys):
    srv = oidc_server
    ada = {"sub": "ada-1", "email": "ada@contoso.test", "email_verified": True}
    assert sign_in(srv, idp, ada) == (302, "ada@contoso.test")              # first sign-in: bound to ada-1
    assert sign_in(srv, idp, {**ada, "sub": "mallory-7"}) == (403, None)    # another sub naming Ada's email
    assert sign_in(srv, idp, ada) == (302, "ada@contoso.test")              # Ada herself, still
    bea = {"sub": "bea-1", "email": "bea@contoso.test"}
    assert sign_in(srv, idp, bea) == (403, None)                            # email_verified missing
    assert sign_in(srv, idp, {**bea, "email_verified": "true"}) == (403, None)
    assert sign_in(srv, idp, {**bea, "email_verified": False}) == (403, None)
    assert sign_in(srv, idp, {**bea, "email_verified": True}) == (302, "bea@contoso.test")


def test_oidc_refuses_unsigned_forged_foreign_and_expired_tokens(oidc_server, idp, keys):
    srv = oidc_server
    cy = {"sub": "cy-1", "email": "cy@contoso.test", "email_verified": True}
    assert sign_in(srv, idp, cy, alg="none") == (403, None)
    assert sign_in(srv, idp, cy, key=keys[1]) == (403, None)                 # signed with another key
    assert sign_in(srv, idp, {**cy, "aud": "someone-else"}) == (403, None)
    assert sign_in(srv, idp, {**cy, "iss": "https://evil.example"}) == (403, None)
    assert sign_in(srv, idp, {**cy, "exp": int(time.time()) - 3600}) == (403, None)
    assert sign_in(srv, idp, cy) == (302, "cy@contoso.test")                # the control
    wait_until(lambda: "sign-in refused" in srv.text(), timeout=10)       # logged after the answer went out
    log = srv.text()
    assert "eyJ" not in log                     # reasons logged, tokens not
