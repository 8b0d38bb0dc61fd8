"""A Laravel-shaped PostgreSQL database, as Laravel's schema builder makes it, and a role that may only SELECT.

The DDL is what `php artisan migrate` emits for the usual `Schema::create` calls (bigserial ids, varchar(255),
timestamp(0) without time zone, jsonb, a uuid-keyed `notifications` with `text` data), plus TenantAtlas's
`operation_runs`, `tenants` and the `tenant_user` pivot.
"""
from __future__ import annotations

import json, uuid
from datetime import datetime, timedelta, timezone

import bcrypt
import psycopg

import pgserver

LARAVEL_DDL = [
    'create table "migrations" ("id" serial primary key not null, "migration" varchar(255) not null, '
    '"batch" integer not null)',
    'create table "users" ("id" bigserial primary key not null, "name" varchar(255) not null, '
    '"email" varchar(255) not null, "email_verified_at" timestamp(0) without time zone null, '
    '"password" varchar(255) not null, "remember_token" varchar(100) null, '
    '"created_at" timestamp(0) without time zone null, "updated_at" timestamp(0) without time zone null)',
    'alter table "users" add constraint "users_email_unique" unique ("email")',
    'create table "tenants" ("id" bigserial primary key not null, "name" varchar(255) not null, '
    '"created_at" timestamp(0) without time zone null, "updated_at" timestamp(0) without time zone null)',
    'create table "tenant_user" ("id" bigserial primary key not null, "tenant_id" bigint not null, '
    '"user_id" bigint not null, "role" varchar(255) not null default \'member\', '
    '"created_at" timestamp(0) without time zone null, "updated_at" timestamp(0) without time zone null)',
    'alter table "tenant_user" add constraint "tenant_user_tenant_id_foreign" foreign key ("tenant_id") '
    'references "tenants" ("id") on delete cascade',
    'alter table "tenant_user" add constraint "tenant_user_user_id_foreign" foreign key ("user_id") '
    'references "users" ("id") on delete cascade',
    'alter table "tenant_user" add constraint "tenant_user_tenant_id_user_id_unique" unique ("tenant_id", "user_id")',
    'create table "operation_runs" ("id" bigserial primary key not null, "tenant_id" bigint not null, '
    '"user_id" bigint null, "initiator_name" varchar(255) null, "type" varchar(255) not null, '
    '"status" varchar(255) not null default \'queued\', "outcome" varchar(255) not null default \'pending\', '
    '"started_at" timestamp(0) without time zone null, "completed_at" timestamp(0) without time zone null, '
    '"summary_counts" jsonb null, "failure_summary" jsonb null, "context" jsonb null, '
    '"created_at" timestamp(0) without time zone null, "updated_at" timestamp(0) without time zone null)',
    'alter table "operation_runs" add constraint "operation_runs_tenant_id_foreign" foreign key ("tenant_id") '
    'references "tenants" ("id") on delete cascade',
    'create table "notifications" ("id" uuid not null, "type" varchar(255) not null, '
    '"notifiable_type" varchar(255) not null, "notifiable_id" bigint not null, "data" text not null, '
    '"read_at" timestamp(0) without time zone null, "created_at" timestamp(0) without time zone null, '
    '"updated_at" timestamp(0) without time zone null)',
    'alter table "notifications" add primary key ("id")',
    'create index "notifications_notifiable_type_notifiable_id_index" on "notifications" '
    '("notifiable_type", "notifiable_id")',
]


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def laravel_hash(password: str) -> str:
    "A hash as Laravel's Hash::make writes it ($2y$, cost 4 here to keep tests quick)."
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


def naive(dt: datetime, tz=timezone.utc) -> datetime:
    "`dt` as the naive wall time an application in `tz` writes, to the second (timestamp(0))."
    return dt.astimezone(tz).replace(tzinfo=None, microsecond=0)


def create_laravel(admin_url: str) -> str:
    "A fresh database with the Laravel-shaped schema and a SELECT-only role `laravel_ro`; returns the admin URL."
    url = pgserver.fresh_database(admin_url)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(dsn(url), autocommit=True) as con:
        for ddl in LARAVEL_DDL: con.execute(ddl)
        con.execute("insert into migrations (migration, batch) values ('2014_10_12_000000_create_users_table', 1)")
        exists = con.execute("select 1 from pg_roles where rolname = 'laravel_ro'").fetchone()
        if not exists: con.execute("create role laravel_ro login")
        con.execute(f'grant connect on database "{name}" to laravel_ro')
        con.execute("grant usage on schema public to laravel_ro")
        con.execute("grant select on all tables in schema public to laravel_ro")
    return url


def read_only_url(url: str) -> str:
    "The same database as the SELECT-only role."
    from sqlalchemy.engine import make_url
    return make_url(url).set(username="laravel_ro", password=None).render_as_string(hide_password=False)


def add_world(url: str, tz=timezone.utc) -> dict:
    """Contoso (Ada, Cy) and Fabrikam (Bob, Cy); Dee belongs to no tenant. Runs as the host writes them."""
    now = datetime.now(timezone.utc)
    w = {}
    with psycopg.connect(dsn(url), autocommit=True) as con:
        for t in ("Contoso", "Fabrikam"):
            w[t] = con.execute("insert into tenants (name, created_at) values (%s, now()) returning id", (t,)).fetchone()[0]
        for name, email, pw, tenants in [("Ada", "Ada@Contoso.test", "ada-secret", ["Contoso"]),
                                         ("Bob", "bob@fabrikam.test", "bob-secret", ["Fabrikam"]),
                                         ("Cy", "cy@both.test", "cy-secret", ["Contoso", "Fabrikam"]),
                                         ("Dee", "dee@nowhere.test", "dee-secret", [])]:
            w[name] = con.execute("insert into users (name, email, password, created_at) values (%s, %s, %s, now()) "
                                  "returning id", (name, email, laravel_hash(pw))).fetchone()[0]
            for t in tenants:
                con.execute("insert into tenant_user (tenant_id, user_id) values (%s, %s)", (w[t], w[name]))
        runs = [  # tenant, user, type, status, outcome, counts, minutes ago
            ("Contoso", "Ada", "inventory.sync", "completed", "succeeded", {"total": 5, "processed": 5}, 50),
            ("Contoso", "Ada", "policy.sync", "completed", "failed", {"total": 3, "failed": 3}, 40),
            ("Contoso", "Ada", "inventory.sync", "running", "pending", {"total": 10, "processed": 4}, 2),
            ("Contoso", "Cy", "inventory.sync", "Queued ", "pending", None, 1),
            ("Fabrikam", "Bob", "inventory.sync", "running", "pending", {"total": 2}, 3),
        ]
        w["runs"] = []
        for t, u, ty, st, out, counts, ago in runs:
            at = naive(now - timedelta(minutes=ago), tz)
            w["runs"].append(con.execute(
                "insert into operation_runs (tenant_id, user_id, initiator_name, type, status, outcome, started_at, "
                "summary_counts, failure_summary, context, created_at, updated_at) values "
                "(%s, %s, %s, %s, %s, %s, %s, %s, '[]', '{}', %s, %s) returning id",
                (w[t], w[u], u, ty, st, out, at, json.dumps(counts) if counts is not None else None, at, at)).fetchone()[0])
    return w


def add_notification(url: str, user_id: int, title: str, body: str = "", url_: str | None = None,
                     read: bool = False, minutes_ago: int = 0, notifiable_type: str = "App\\Models\\User") -> str:
    "A Filament database notification, as `Notification::make()->sendToDatabase($user)` stores it."
    nid = str(uuid.uuid4())
    data = {"actions": [{"name": "view", "url": url_}] if url_ else [], "body": body, "color": None,
            "duration": "persistent", "icon": "heroicon-o-check-circle", "iconColor": "success",
            "status": "success", "title": title, "view": "filament-notifications::notification",
            "viewData": [], "format": "filament"}
    at = naive(datetime.now(timezone.utc) - timedelta(minutes=minutes_ago))
    with psycopg.connect(dsn(url), autocommit=True) as con:
        con.execute("insert into notifications (id, type, notifiable_type, notifiable_id, data, read_at, created_at, "
                    "updated_at) values (%s, 'Filament\\Notifications\\DatabaseNotification', %s, %s, %s, %s, %s, %s)",
                    (nid, notifiable_type, user_id, json.dumps(data), at if read else None, at, at))
    return nid
