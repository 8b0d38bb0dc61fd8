"""Helpers for the security tests: a real `opsux serve` in a subprocess, a raw HTTP client (own cookies, optional
source address on 127.0.0.0/8, no redirects followed) and a raw Bokeh websocket client speaking Bokeh's protocol."""
from __future__ import annotations

import asyncio, base64, http.client, json, os, re, subprocess, sys, time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from support import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "security-tests-cookie-secret-" + "s" * 40
ALICE, BOB = ("alice@contoso.test", "alice-long-password-1"), ("bob@fabrikam.test", "bob-long-password-2")
TOKEN = re.compile(r'"token":"([^"]+)"')
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def make_world(url: str) -> dict:
    "Alice in Contoso, Bob in Fabrikam, each with a password and one finished run."
    from opsux.store.ops import connect
    ops = connect(url)
    try:
        d = ops.directory
        contoso, fabrikam = d.add_tenant("Contoso"), d.add_tenant("Fabrikam")
        alice = d.add_user("Alice Archer", email=ALICE[0], tenants=[contoso], password=ALICE[1])
        bob = d.add_user("Bob Baker", email=BOB[0], tenants=[fabrikam], password=BOB[1])
        for t, u in ((contoso, alice), (fabrikam, bob)):
            r = ops.runs.enqueue(t, "inventory.sync", user=u)
            ops.runs.start(r); ops.runs.set_total(r, 1); ops.runs.advance(r, processed=1, succeeded=1)
            ops.runs.complete(r)
        return {"alice": alice.id, "bob": bob.id}
    finally:
        ops.close()


class Served:
    "`python -m opsux.cli serve ARGS…` from the checkout `root` on a free port, its output in `log`; stopped by `stop()`."
    def __init__(self, tmp: Path, db: str, *args: str, port: int | None = None, env: dict | None = None,
                 name: str = "serve", root: Path = ROOT):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}-{self.port}.log"
        full_env = {**os.environ, "OPSUX_COOKIE_SECRET": SECRET, "OPSUX_HOME": str(tmp / "home"),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--db", db, "--port", str(self.port),
                                      *args], env=full_env, stdout=self._out, stderr=subprocess.STDOUT, cwd=str(root))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if Client(self.base).get("/healthz")[0]: return          # any answer: the server is up
            except OSError:
                pass
            time.sleep(0.1)  # polling a condition with a deadline
        self.stop()
        raise TimeoutError("opsux serve did not come up")

    def text(self) -> str: return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try: self.proc.wait(15)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait(10)
        self._out.close()


def basic_world(tmp_path_factory, name: str):
    "A module fixture's body: `make_world` on a fresh SQLite file, served with `--auth basic`; yields the `Served`."
    tmp = tmp_path_factory.mktemp(name)
    db = f"sqlite:///{tmp}/{name}.sqlite"
    make_world(db)
    srv = Served(tmp, db, "--auth", "basic")
    yield srv
    srv.stop()


def expired(m) -> bool:
    "True when the Set-Cookie morsel `m` deletes its cookie: an empty value, `Max-Age` ≤ 0 or an `Expires` past."
    # Its attributes, never its text: a signed value's hex signature holds "1970" in 0.12 % of cookies (test flake)
    if m.value == "" or m["max-age"] and int(m["max-age"]) <= 0: return True
    return bool(m["expires"]) and parsedate_to_datetime(m["expires"]) <= datetime.now(timezone.utc)


class Client:
    "A raw HTTP client with its own cookie jar; `source` picks the client address (127.0.0.0/8 all reach us)."
    def __init__(self, base: str, source: str | None = None, headers: dict | None = None):
        u = urlsplit(base)
        self.host, self.port, self.source = u.hostname, u.port, source
        self.cookies: dict[str, str] = {}
        self.headers = dict(headers or {})

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None,
                timeout: float = 60):
        con = http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                         source_address=(self.source, 0) if self.source else None)
        h = {**self.headers, **(headers or {})}
        if self.cookies: h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = urlencode(body).encode() if body is not None else None
        if data is not None: h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            con.request(method, path, body=data, headers=h)
            r = con.getresponse()
            text = r.read().decode("utf-8", "replace")
        finally:
            con.close()
        for raw in r.headers.get_all("Set-Cookie") or []:
            for k, m in SimpleCookie(raw).items():
                if expired(m): self.cookies.pop(k, None)
                else: self.cookies[k] = m.value
        return r.status, r.headers, text

    def get(self, path, **kw): return self.request("GET", path, **kw)
    def post(self, path, body, **kw): return self.request("POST", path, body=body, **kw)

    def form_token(self, path: str = "/login") -> str:
        status, _, body = self.get(path)
        assert status == 200, (status, body[:300])
        m = CSRF.search(body)
        return m.group(1) if m else ""          # a form without a token (as before issue 12) gets an empty one

    def sign_in(self, email: str, password: str, token: str | None = None):
        "Sign in through the login form (with its CSRF token); returns the POST's (status, headers, body)."
        token = token or self.form_token()
        return self.post("/login", {"username": email, "password": password, "_csrf": token})

    def sign_out(self):
        "POST the sign-out form shown by GET /logout."
        return self.post("/logout", {"_csrf": self.form_token("/logout")})

    def page_token(self, path: str = "/operations") -> str:
        status, _, body = self.get(path)
        assert status == 200, (status, body[:300])
        return TOKEN.search(body).group(1)


# ------------------------------------------------------------------------------ Bokeh over a raw websocket
DOCUMENT_READY = {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event",
                              "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}}}]}


def readable(doc: str) -> str:
    """`doc` (Bokeh JSON) with every `encoded` attribute (the runs table's markup, sent base64 by `PickTable`)
    decoded: a text assertion then sees the table's text, and never matches by chance inside base64."""
    def walk(x):
        if isinstance(x, dict):
            return {k: base64.b64decode(v).decode() if k == "encoded" and isinstance(v, str) else walk(v)
                    for k, v in x.items()}
        return [walk(v) for v in x] if isinstance(x, list) else x
    return json.dumps(walk(json.loads(doc)), ensure_ascii=False)


class BokehSocket:
    "One Bokeh websocket connection (Bokeh's wire protocol: header, metadata, content frames)."
    def __init__(self, ws): self.ws = ws

    @classmethod
    async def open(cls, base: str, path: str, token: str, cookies: dict | None = None, host: str | None = None,
                   origin: str | None = None):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect
        headers = {"Origin": origin or base}
        if cookies: headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if host: headers["Host"] = host
        req = HTTPRequest(base.replace("http://", "ws://", 1) + path + "/ws", headers=headers, request_timeout=30)
        ws = await websocket_connect(req, subprotocols=["bokeh", token], max_message_size=64 * 2**20)
        self = cls(ws)
        header, _ = await self.read()
        assert header["msgtype"] == "ACK", header
        return self

    async def read(self, timeout: float = 30):
        "(header, content) of the next message; (None, None) when the server closed the socket."
        frames = []
        for _ in range(3):
            f = await asyncio.wait_for(self.ws.read_message(), timeout)
            if f is None: return None, None
            frames.append(f)
        header = json.loads(frames[0])
        for _ in range(2 * int(header.get("num_buffers") or 0)): await self.ws.read_message()
        return header, frames[2]

    async def send(self, msgtype: str, content: dict | None = None):
        await self.ws.write_message(json.dumps({"msgid": f"t{time.monotonic_ns()}", "msgtype": msgtype}))
        await self.ws.write_message("{}")
        await self.ws.write_message(json.dumps(content or {}))

    async def pull_doc(self) -> str:
        "The whole document as the server sends it (PULL-DOC-REPLY content), its markup made readable (`readable`)."
        await self.send("PULL-DOC-REQ")
        while True:
            header, content = await self.read()
            if header is None: raise ConnectionError("closed before the document arrived")
            if header["msgtype"] == "PULL-DOC-REPLY":
                await self.send("PATCH-DOC", DOCUMENT_READY)
                return readable(content if isinstance(content, str) else content.decode())

    async def closed_within(self, seconds: float) -> bool:
        "True when the server closes the socket within `seconds` (messages before that are skipped)."
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try: f = await asyncio.wait_for(self.ws.read_message(), max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError: return False
            if f is None: return True
        return False

    def close(self): self.ws.close()


def run(coro, timeout: float = 120):
    "Run `coro` on a fresh event loop in a thread of its own (Playwright's sync API may hold this thread's loop)."
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()
