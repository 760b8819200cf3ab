"""Redis state belongs to one sentinel row: an id reused by another row starts afresh, and
the state of deleted sentinels is forgotten by a periodic task, never by a web request."""

from __future__ import annotations

import json
import time

import pytest

from dashboard.models import Cluster, Profile, Sentinel
from dashboard.models.core import FORGET_IDLE_S, forget_deleted_sentinels
from workers.engine.profiles import AT_LEAST_ONCE, DEFAULT_PROFILES
from workers.runtime.run import adopt_state
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore, sentinel_ids

# On SQLite too (both_databases): a deleted sentinel's id, which SQLite gives the next row and
# PostgreSQL never does (the incarnation tells the rows' states apart on both).
pytestmark = pytest.mark.both_databases


@pytest.fixture
def client(redis_url):
    return connect(redis_url)


def make_sentinel(name: str) -> Sentinel:
    cluster, _ = Cluster.objects.get_or_create(name="c", defaults={"bootstrap_servers": "h:1"})
    data = DEFAULT_PROFILES[AT_LEAST_ONCE]
    profile, _ = Profile.objects.get_or_create(
        name=data.name,
        defaults={
            "semantic": data.semantic,
            "producer_properties": data.producer,
            "consumer_properties": data.consumer,
            "commit_strategy": data.commit_strategy,
        },
    )
    return Sentinel.objects.create(name=name, cluster=cluster, profile=profile, topic=name)


def test_it_forgets_state_that_belonged_to_another_incarnation_and_keeps_the_lease(client):
    store = SentinelStore(client, 990_101)
    store.reset()
    client.delete(store.key("incarnation"), store.key("lease"))
    assert store.adopt("first") is False  # nothing to forget on a first start
    store.register_run(7, {"started": 1})
    store.set_status({"verdict": "VIOLATED"})
    lease = store.lease("worker-a", 30_000)
    assert lease.acquire_or_renew()
    assert store.adopt("first") is False
    assert store.runs() == {7: {"started": 1}}

    assert store.adopt("second") is True
    assert store.runs() == {} and store.status() is None
    assert lease.holder() == "worker-a"
    assert store.adopt("second") is False
    lease.release()


@pytest.mark.django_db
def test_it_gives_every_row_its_own_incarnation_and_records_the_reset(client):
    one, two = make_sentinel("one"), make_sentinel("two")
    assert one.to_spec().incarnation and one.to_spec().incarnation != two.to_spec().incarnation
    store = SentinelStore(client, one.pk)
    store.reset()
    client.set(store.key("incarnation"), "a-former-row")
    store.register_run(1, {})
    adopt_state(store, one.to_spec())
    assert store.runs() == {}
    assert [e["kind"] for e in store.events()] == ["state-reset"]


@pytest.mark.django_db
def test_it_forgets_deleted_sentinels_only_once_nothing_runs_them(client):
    kept = make_sentinel("kept")
    deleted = make_sentinel("deleted")
    running_without_row = 990_102
    now = time.time()
    for pk in (kept.pk, deleted.pk, running_without_row):
        store = SentinelStore(client, pk)
        store.reset()
        store.set_status({"id": pk})
    client.hset(
        SentinelStore(client, deleted.pk).key("health"),
        "consumer",
        json.dumps({"ts": now - FORGET_IDLE_S - 1}),
    )
    SentinelStore(client, running_without_row).heartbeat("producer")
    deleted_pk = deleted.pk
    deleted.delete()
    assert SentinelStore(client, deleted_pk).status() == {"id": deleted_pk}  # not by the request

    assert deleted_pk in forget_deleted_sentinels(now)
    assert deleted_pk not in sentinel_ids(client)
    assert {kept.pk, running_without_row} <= sentinel_ids(client)
    SentinelStore(client, running_without_row).reset()
