"""The test database as worker processes started by a test must open it.

bin/test runs the suite on PostgreSQL (what production runs) and the web tests a second time
on SQLite; a test that starts a Celery worker hands it the database the test itself is using.
"""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


def database_url() -> str:
    """``DATABASE_URL`` of the database this test is using (its test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(s["USER"] or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s["HOST"] or "127.0.0.1"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}@{host}{port}/{quote(s['NAME'], safe='')}"
    raise AssertionError(f"no DATABASE_URL for a {connection.vendor} test database")


def stored_text(tables: list[str]) -> bytes:
    """Every row of ``tables`` as the database stores it, as bytes: what a backup or a
    stolen disk would show (a test that nothing secret is stored in clear reads it)."""
    chunks: list[bytes] = []
    with connection.cursor() as cursor:
        for table in tables:
            name = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {name}")  # noqa: S608 (table names are the test's)
            for row in cursor.fetchall():
                chunks.append(repr(row).encode())
    return b"\n".join(chunks)
