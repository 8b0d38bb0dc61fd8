"""API tokens on SQLite and PostgreSQL: only the SHA-256 is stored, revocation is immediate, last use is recorded
(at most once a minute), a deleted user's tokens go with them, a read-only handle checks tokens without writing."""
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

import opsux
from opsux.store.models import User
from opsux.store.tokens import USE_RESOLUTION, Tokens, api_tokens, hash_token, new_token


class Clock:
    def __init__(self, start): self.now = start
    def __call__(self): return self.now


def test_only_the_hash_is_stored_and_the_token_names_its_user(world):
    stored, token = world.ops.tokens.create(world.ada.email, name="nightly")
    with world.ops.reader.connect() as con:
        rows = [tuple(r) for r in con.execute(select(api_tokens))]
    assert len(rows) == 1 and not any(token in str(v) for v in rows[0]) and hash_token(token) in rows[0]
    assert world.ops.tokens.user_for(token) == world.ada.id
    assert world.ops.tokens.user_for(new_token()) is None and world.ops.tokens.user_for("") is None
    assert [t.name for t in world.ops.tokens.list(world.ada)] == ["nightly"] and world.ops.tokens.list(world.bob) == []


def test_revocation_is_immediate_and_kept(world):
    ops = world.ops
    (a, ta), (b, tb) = ops.tokens.create(world.ada), ops.tokens.create(world.ada, name="second")
    assert ops.tokens.revoke(a.id).revoked_at is not None
    assert ops.tokens.user_for(ta) is None and ops.tokens.user_for(tb) == world.ada.id
    again = ops.tokens.revoke(a.id)
    assert again.revoked_at == ops.tokens.get(a.id).revoked_at           # revoking twice changes nothing
    assert [t.active for t in ops.tokens.list(world.ada)] == [False, True]
    assert ops.tokens.revoke(10_000) is None


def test_last_use_is_written_at_most_once_a_minute(world):
    ops = world.ops
    stored, token = ops.tokens.create(world.cy)
    clock = Clock(stored.created_at)
    tokens = Tokens(ops, clock=clock)
    assert tokens.user_for(token) == world.cy.id
    first = tokens.get(stored.id).last_used_at
    clock.now += USE_RESOLUTION / 2
    tokens.user_for(token)
    assert tokens.get(stored.id).last_used_at == first
    clock.now += USE_RESOLUTION
    tokens.user_for(token)
    assert tokens.get(stored.id).last_used_at == clock.now


def test_bad_names_and_unknown_users_are_one_line_errors(world):
    with pytest.raises(ValueError, match="one printable line"): world.ops.tokens.create(world.ada, name="a\nb")
    with pytest.raises(LookupError, match="no opsux user"): world.ops.tokens.create("nobody@example.test")
    with pytest.raises(LookupError, match="no opsux user"): world.ops.tokens.list("nobody@example.test")


def test_a_deleted_users_tokens_go_with_them(world):
    ops = world.ops
    _, token = ops.tokens.create(world.bob)
    with ops.writer.begin() as con: con.execute(delete(User).where(User.id == world.bob.id))
    assert ops.tokens.user_for(token) is None
    with ops.reader.connect() as con: assert con.execute(select(api_tokens)).all() == []


def test_a_read_only_handle_checks_tokens_without_writing(world, db_url):
    _, token = world.ops.tokens.create(world.ada)
    ro = opsux.connect(db_url, read_only=True)
    try: assert ro.tokens.user_for(token) == world.ada.id
    finally: ro.close()
    assert world.ops.tokens.list(world.ada)[0].last_used_at is None


def test_a_database_before_migration_0006_says_what_to_do(db_url):
    from opsux.store.db import alembic_config
    from alembic import command
    command.upgrade(alembic_config(db_url), "0005")
    ops = opsux.connect(db_url, migrate=False)
    try:
        assert ops.tokens.user_for(new_token()) is None
        with pytest.raises(LookupError, match="opsux db upgrade"): ops.tokens.create(1)
    finally: ops.close()
