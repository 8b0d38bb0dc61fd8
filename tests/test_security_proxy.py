"""Issue 12, item 5: the nginx block of docs/SECURITY.md, run for real on loopback (no TLS) in front of
`opsux serve --use-xheaders --trusted-proxy 127.0.0.1`: a client's own X-Real-IP/X-Forwarded-For cannot give it
fresh throttle counters (nor lock out someone else's address); the same headers sent straight to opsux from an
address that is not the proxy are ignored."""
from __future__ import annotations

import os, re, shutil, subprocess, tempfile, time
from pathlib import Path

import pytest

from support import free_port, wait_until
from security_support import ALICE, ROOT, Client, Served, make_world

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def documented_block() -> str:
    "The nginx configuration of docs/SECURITY.md, as written there."
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    return re.search(r"```nginx\n(.*?)```", text, re.S).group(1)


def loopback_config(block: str, listen: int, upstream: int, prefix: Path) -> str:
    "The documented block with loopback addresses instead of TLS and the two hosts, inside a minimal nginx.conf."
    block = block.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{listen};")
    block = re.sub(r"upstream opsux \{[^}]*\}", f"upstream opsux {{ server 127.0.0.1:{upstream}; }}", block)
    temps = "\n".join(f"    {k}_temp_path {prefix}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"user root;\nworker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temps}\n{block}\n}}\n")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    if not os.path.exists(NGINX): pytest.skip("nginx is not installed (apt-get install -y nginx)")
    tmp = tmp_path_factory.mktemp("proxy")
    db = f"sqlite:///{tmp}/proxy.sqlite"
    make_world(db)
    srv = Served(tmp, db, "--auth", "basic", "--use-xheaders", "--trusted-proxy", "127.0.0.1",
                 "--allow-websocket-origin", "ops.example.com")
    prefix = Path(tempfile.mkdtemp(prefix="opsux-nginx-"))
    listen = free_port()
    (prefix / "nginx.conf").write_text(loopback_config(documented_block(), listen, srv.port, prefix))
    nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{listen}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if Client(base).get("/healthz")[0] == 200: break
        except OSError:
            pass
        assert nginx.poll() is None and time.monotonic() < deadline, (prefix / "error.log").read_text()
        time.sleep(0.1)  # polling a condition with a deadline
    yield base, srv
    nginx.terminate(); nginx.wait(10)
    srv.stop()
    shutil.rmtree(prefix, ignore_errors=True)


def test_the_documented_block_sets_what_opsux_reads():
    block = documented_block()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in block
    assert "proxy_set_header X-Real-IP $remote_addr;" in block       # overwritten: a client's value never passes
    assert "proxy_set_header Host $host;" in block


def test_spoofed_headers_through_nginx_do_not_reset_the_throttle(proxied):
    base, srv = proxied
    c = Client(base, source="127.0.0.3", headers={"Host": "ops.example.com"})
    token = c.form_token()
    codes = []
    for i in range(7):
        spoof = {"X-Real-IP": f"203.0.113.{i + 1}", "X-Forwarded-For": f"198.51.100.{i + 1}, 192.0.2.{i + 1}"}
        codes.append(c.post("/login", {"username": ALICE[0], "password": "wrong", "_csrf": token}, headers=spoof)[0])
    assert codes == [401] * 5 + [429, 429], codes                     # one counter: the real client's
    wait_until(lambda: "POST /login (127.0.0.3)" in srv.text(), timeout=10)   # the access log: the real client
    log = srv.text()
    assert not re.search(r"(203\.0\.113|198\.51\.100|192\.0\.2)\.\d", log)
    # the address an attacker named is not locked out: a real client there (here: another loopback address)
    assert Client(base, source="127.0.0.8", headers={"Host": "ops.example.com"}).sign_in(*ALICE)[0] == 302


def test_headers_sent_straight_to_opsux_are_ignored(proxied):
    base, srv = proxied
    direct = Client(srv.base, source="127.0.0.4", headers={"X-Forwarded-For": "127.0.0.9", "X-Real-IP": "127.0.0.9",
                                                         "X-Forwarded-Proto": "https"})
    status, headers, _ = direct.sign_in(ALICE[0], "wrong")
    assert status == 401 and "Strict-Transport-Security" not in headers      # not believed to be https either
    # Tornado writes the access line after the response has gone out: wait for it rather than race it
    wait_until(lambda: "POST /login (127.0.0.4)" in srv.text(), timeout=10)
