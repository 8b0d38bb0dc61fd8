"""Issue 12, item 4: the login throttle holds under concurrency, per account as well as per client, across processes
(it lives in the database: SQLite and PostgreSQL), and password checks do not starve other sign-ins."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from security_support import ALICE, BOB, Client, Served, make_world


class Clock:
    def __init__(self): self.t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    def __call__(self): return self.t
    def advance(self, seconds): self.t += timedelta(seconds=seconds)


def test_store_counts_exactly_under_concurrent_attempts(ops):
    from opsux.store.authstore import AuthStore
    store = AuthStore(ops)
    barrier, waits, lock = threading.Barrier(8), [], threading.Lock()
    def hammer():
        barrier.wait()
        mine = [store.attempt([("pair:ip|ada", 40)], 300, 600) for _ in range(10)]
        with lock: waits.extend(mine)
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert waits.count(0.0) == 40 and len(waits) == 80          # exactly the limit got through, no lost update
    assert store.attempts("pair:ip|ada") == 80


def test_throttle_windows_lockouts_and_success(ops):
    from opsux.ui.auth import LoginThrottle
    from opsux.store.authstore import AuthStore
    clock = Clock()
    th = LoginThrottle(AuthStore(ops, clock=clock), max_failures=3, window=60, lockout=120, per_account=6, per_ip=10)
    assert [th.attempt("10.0.0.1", "ada@x.test") for _ in range(4)] == [0.0, 0.0, 0.0, 120.0]
    assert th.attempt("10.0.0.2", "ada@x.test") == 0.0            # Ada elsewhere is not locked out with the attacker
    clock.advance(121)
    assert th.attempt("10.0.0.1", "ADA@x.test ") == 0.0           # unlocked, new window
    waits = [th.attempt(f"10.1.0.{i}", "ada@x.test") for i in range(6)]   # five more addresses fill the account
    assert waits == [0.0] * 5 + [120.0]
    clock.advance(500)
    th.attempt("10.0.0.9", "bob@x.test"); th.attempt("10.0.0.9", "bob@x.test")
    th.success("10.0.0.9", "bob@x.test")
    assert th.store.attempts("pair:10.0.0.9|bob@x.test") == 0
    waits = [th.attempt("10.9.9.9", f"user{i}@x.test") for i in range(11)]
    assert waits[:10] == [0.0] * 10 and waits[10] == 120.0        # one address spraying many emails


@pytest.fixture(params=["sqlite", "postgresql"])
def two_servers(request, tmp_path):
    if request.param == "sqlite": db = f"sqlite:///{tmp_path}/throttle.sqlite"
    else:
        from pgserver import fresh_database
        db = fresh_database(request.getfixturevalue("pg_url"))
    make_world(db)
    one = Served(tmp_path, db, "--auth", "basic", name="one")
    two = Served(tmp_path, db, "--auth", "basic", name="two")
    yield one, two
    one.stop(); two.stop()


def test_simultaneous_guesses_get_five_checks_across_two_processes(two_servers):
    one, two = two_servers
    attackers = [Client(s.base, source="127.0.0.5") for s in (one, two)]
    tokens = [c.form_token() for c in attackers]
    def guess(i):
        c = attackers[i % 2]
        return Client.post(c, "/login", {"username": ALICE[0], "password": f"guess-{i}", "_csrf": tokens[i % 2]},
                           timeout=120)[0]
    def bob_signs_in():
        return Client(one.base, source="127.0.0.6").sign_in(*BOB)[0]
    with ThreadPoolExecutor(60) as pool:
        guesses = [pool.submit(guess, i) for i in range(58)]
        bob = pool.submit(bob_signs_in)
        codes = [f.result() for f in guesses]
    checked = codes.count(401)                                     # answered "wrong password": argon2 ran
    assert 1 <= checked <= 5 and codes.count(429) == 58 - checked, codes
    assert bob.result() == 302                                     # another user's sign-in went through meanwhile
    right = attackers[0].sign_in(*ALICE, token=tokens[0])
    assert right[0] == 429 and "user" not in attackers[0].cookies   # the right password, now: locked, not checked
    assert "Retry-After" in right[1]
    assert Client(one.base, source="127.0.0.7").sign_in(*ALICE)[0] == 302    # Alice from her own address


def test_the_account_limit_holds_across_addresses(two_servers):
    one, two = two_servers
    codes = [Client((one, two)[i % 2].base, source=f"127.0.1.{i + 1}").sign_in(ALICE[0], "wrong")[0] for i in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429
    assert Client(one.base, source="127.0.1.99").sign_in(*ALICE)[0] == 429      # locked, even for the right one
