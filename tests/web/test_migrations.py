"""The migrations: the committed ones match the models (the test database is built without
them, ``--no-migrations``), and they build a fresh database of the engine the tests run on,
which bin/up's start path then fills (``ensure_admin``, ``sentinels ensure-defaults``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_it_has_a_migration_for_every_model_change():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        pytest.fail(f"models changed without a migration:\n{out.getvalue()} (exit {exc.code})")


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database on the tests' engine: a new SQLite file, or a new database on the
    tests' PostgreSQL server (dropped afterwards)."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    import psycopg
    from psycopg import sql

    db = settings.DATABASES["default"]
    name = f"ds_fresh_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
        yield f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT']}/{name}"
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


# bin/up's start path after ``migrate`` (workers/localkafka/devstack.py), in one process.
START = """
import json
from io import StringIO
from django.core.management import call_command
from django.db import connection
call_command("migrate", "--check", verbosity=0)  # exits 1 if one is left unapplied
out = StringIO()
call_command("ensure_admin", stdout=out)
call_command("sentinels", "ensure-defaults", stdout=out)
status = StringIO()
call_command("sentinels", "status", "--json", stdout=status)
print(json.dumps({"vendor": connection.vendor, "out": out.getvalue(),
                  "names": sorted(s["name"] for s in json.loads(status.getvalue())["sentinels"])}))
"""


def manage(database_url: str, *args: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DS_ADMIN_USER": "first-admin",
        "DS_ADMIN_PASSWORD": "first-admin-correct-horse",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_migrations_build_a_fresh_database_that_bin_up_starts_on(fresh_database_url):
    migrated = manage(fresh_database_url, "migrate", "--noinput")
    assert "Applying dashboard.0001_initial... OK" in migrated
    started = json.loads(manage(fresh_database_url, "shell", "-c", START).splitlines()[-1])
    assert started["vendor"] == connection.vendor  # the engine the other tests run on
    assert "created admin user: first-admin" in started["out"]
    assert started["names"] == ["at-least-once", "at-most-once", "exactly-once"]
