"""``manage.py sentinels status --json``: one documented document per sentinel."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from dashboard.models import Sentinel, ensure_defaults
from workers.engine.documents import COUNTERS
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

# On SQLite too (both_databases): bin/up's start path: the default sentinels created once
# (get_or_create in a transaction).
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

DOC_KEYS = {
    "version",
    "id",
    "name",
    "semantic",
    "cluster",
    "topic",
    "enabled",
    "run_id",
    "runs",
    "verdict",
    "reasons",
    "totals",
    "window",
    "latency_ms",
    "recent_latency_ms",
    "produce_ack_latency_ms",
    "partitions",
    "errors",
    "last_progress_at",
    "updated_at",
}


def status_json() -> dict:
    out = StringIO()
    call_command("sentinels", "status", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def defaults(redis_url):
    sentinels = ensure_defaults()
    client = connect(redis_url)
    for s in sentinels:
        SentinelStore(client, s.pk).reset()
    yield sentinels
    for s in sentinels:
        SentinelStore(client, s.pk).reset()


def test_it_creates_one_default_sentinel_per_semantic_once(defaults):
    assert sorted(s.semantic for s in defaults) == ["at-least-once", "at-most-once", "exactly-once"]
    ensure_defaults()
    assert Sentinel.objects.count() == 3


def test_it_prints_a_stalled_placeholder_for_a_sentinel_that_never_reported(defaults):
    docs = status_json()["sentinels"]
    assert [d["name"] for d in docs] == sorted(s.name for s in defaults)
    for doc in docs:
        assert set(doc) >= DOC_KEYS, DOC_KEYS - set(doc)
        assert doc["verdict"] == "STALLED"
        assert doc["totals"] == dict.fromkeys(COUNTERS, 0)


def test_it_prints_the_checkers_report_with_the_database_names(defaults, redis_url):
    sentinel = defaults[0]
    report = {
        "id": sentinel.pk,
        "name": "stale-name",
        "verdict": "HOLDING",
        "reasons": [],
        "totals": dict.fromkeys(COUNTERS, 7),
        "updated_at": time.time(),
        "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
    }
    SentinelStore(connect(redis_url), sentinel.pk).set_status(report)
    doc = next(d for d in status_json()["sentinels"] if d["id"] == sentinel.pk)
    assert doc["verdict"] == "HOLDING" and doc["totals"]["lost"] == 7
    assert doc["name"] == sentinel.name and doc["semantic"] == sentinel.semantic


def test_it_marks_a_silent_checker_stalled(defaults, redis_url):
    sentinel = defaults[1]
    report = {
        "id": sentinel.pk,
        "verdict": "HOLDING",
        "reasons": [],
        "totals": {},
        "updated_at": time.time() - 600,
    }
    SentinelStore(connect(redis_url), sentinel.pk).set_status(report)
    doc = next(d for d in status_json()["sentinels"] if d["id"] == sentinel.pk)
    assert doc["verdict"] == "STALLED"
    assert "checker silent" in doc["reasons"][0]


def test_it_prints_a_line_per_sentinel_without_json(defaults):
    out = StringIO()
    call_command("sentinels", "status", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 3 and all("STALLED" in line for line in lines)
