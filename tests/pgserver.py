"""A throwaway PostgreSQL for tests and benchmarks.

`ensure_postgres()` returns an admin URL (postgresql+psycopg://...) of a server the
tests may create databases on: `OPSUX_TEST_DATABASE_URL` when set, otherwise a
private server started from the installed PostgreSQL 15 binaries (as the
`postgres` user when running as root), stopped when the process exits.
`fresh_database(admin_url)` creates an empty database and returns its URL.
"""
from __future__ import annotations

import atexit, os, shutil, subprocess, tempfile, threading, time, uuid
from pathlib import Path

from support import free_port


def _default_bin() -> Path:
    "PostgreSQL 15's binaries, else the newest installed version's."
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    preferred = Path("/usr/lib/postgresql/15/bin")
    return preferred if (preferred / "initdb").exists() or not found else found[-1].parent


PG_BIN = Path(os.environ["OPSUX_PG_BIN"]) if os.environ.get("OPSUX_PG_BIN") else _default_bin()
_lock = threading.Lock()
_admin_url: str | None = None
_error: str | None = None


class PostgresUnavailable(RuntimeError):
    "No PostgreSQL could be found or started."


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _start(durable: bool = False) -> str:
    if not (PG_BIN / "initdb").exists():
        raise PostgresUnavailable(f"no PostgreSQL server binaries in {PG_BIN}")
    base = Path(tempfile.mkdtemp(prefix="opsux-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres"); shutil.chown(sock, "postgres")
    os.chmod(base, 0o700)
    run = lambda cmd, **kw: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True, **kw)
    try:
        run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
    except subprocess.CalledProcessError as e:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {e.stderr.strip()[-500:]}") from e
    port = free_port()
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sock} "
            "-c max_connections=200 -c shared_buffers=256MB")
    if not durable:  # tests throw the data away: skip the flushes
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", opts, "-w", "-t", "60", "start"])
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"pg_ctl start failed: {e.stderr.strip()[-300:]} {log[-500:]}") from e

    def stop():
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    atexit.register(stop)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    _servers[url] = PgServer(url, data, base / "log", opts)
    return url


_servers: dict[str, "PgServer"] = {}


class PgServer:
    "A server this process started itself: fault tests may stop, start or restart it."
    def __init__(self, url: str, data: Path, log: Path, opts: str):
        self.url, self.data, self.log, self.opts = url, data, log, opts

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]),
                       check=True, capture_output=True, text=True)

    def stop(self, mode: str = "fast") -> None:
        "Stop the server (`fast`: disconnect clients cleanly; `immediate`: like a crash)."
        self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def start(self) -> None:
        "Start it again on the same port and data directory; returns once it accepts connections."
        self.pg_ctl("-l", str(self.log), "-o", self.opts, "-w", "-t", "60", "start")

    def restart(self, mode: str = "fast") -> None:
        "Stop with `mode`, then start; clients lose their connections."
        self.stop(mode); self.start()


def start_server(durable: bool = False) -> PgServer:
    "Start a private throwaway server that the caller may stop and restart (fault tests); returns its handle."
    return _servers[_start(durable=durable)]


def start_postgres(durable: bool = True) -> str:
    "Start a private throwaway server (durable: fsync on, as in production) and return its admin URL."
    return _start(durable=durable)


def ensure_postgres() -> str:
    "Admin URL of a usable PostgreSQL (env `OPSUX_TEST_DATABASE_URL` or a private throwaway server)."
    global _admin_url, _error
    with _lock:
        if _admin_url: return _admin_url
        if _error: raise PostgresUnavailable(_error)
        env = os.environ.get("OPSUX_TEST_DATABASE_URL")
        try:
            _admin_url = env if env else _start()
        except Exception as e:  # remember the reason; every caller gets the same answer
            _error = f"{type(e).__name__}: {e}"
            raise PostgresUnavailable(_error) from e
        return _admin_url


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    "`url` with its database name replaced by `name`."
    from sqlalchemy.engine import make_url
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def fresh_database(admin_url: str, name: str | None = None, template: str = "template0") -> str:
    "Create an empty database (a copy of `template`) on the server of `admin_url` and return its URL."
    import psycopg
    name = name or f"opsux_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_dsn(admin_url), autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    "Drop the database of `url` (best effort: closes other sessions first)."
    import psycopg
    from sqlalchemy.engine import make_url
    name = make_url(url).database
    with psycopg.connect(_psycopg_dsn(admin_url), autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
