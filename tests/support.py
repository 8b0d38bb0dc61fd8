"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""
import os, socket, time

CHROMIUM = os.environ.get("OPSUX_CHROMIUM", "/usr/bin/chromium")  # the system Chromium; never a downloaded one
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def wait_until(predicate, timeout=10.0, interval=0.02):
    "Poll `predicate` until it is truthy; fail after `timeout` seconds."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value: return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def free_port() -> int:
    "A TCP port on the loopback interface that nothing listens on right now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
