"""``/metrics``: the Prometheus exposition of the status documents, and who may scrape it."""

from __future__ import annotations

import time

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from dashboard.models import ApiToken, Cluster
from dashboard.prometheus import COUNTER_NAMES, exposition, reference_exposition
from tests.support.dashboard_data import counts, status_doc
from workers.engine.documents import COUNTERS, LATENCY_BUCKETS_S, latency_buckets
from workers.engine.latency import RELATIVE_ERROR, LatencyHistogram
from workers.store.connection import connect
from workers.store.sentinel import SentinelStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(alice):
    return ApiToken.issue(alice, "prometheus", "read")


def scrape(client, raw: str) -> dict[str, dict[tuple, float]]:
    """``{sample name: {sorted label items: value}}`` of a successful scrape."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def labels(sentinel, **extra: str) -> tuple:
    base = {
        "sentinel": sentinel.name,
        "cluster": sentinel.cluster.name,
        "topic": sentinel.topic,
        "semantic": sentinel.semantic,
        **extra,
    }
    return tuple(sorted(base.items()))


def test_it_exports_each_partitions_counters_from_the_status_document(
    client, sentinels, redis_url, token
):
    alo = sentinels["at-least-once"]
    hist = LatencyHistogram()
    hist.record_many([0.5, 3.0, 12.0, 80.0, 2000.0])
    doc = status_doc(
        alo,
        "VIOLATED",
        totals=counts(produced=20, acked=18, processed=17, lost=2, late=1, foreign=5),
        partitions={
            "0": counts(produced=12, acked=11, processed=10, lost=1, late=1, foreign=2, pending=3),
            "1": counts(produced=8, acked=7, processed=7, lost=1),
        },
        latency_buckets={
            "le_s": list(LATENCY_BUCKETS_S),
            "e2e": latency_buckets(hist),
            "ack": latency_buckets(LatencyHistogram()),
        },
    )
    SentinelStore(connect(redis_url), alo.pk).set_status(doc)
    samples = scrape(client, token[1])

    for partition, values in doc["partitions"].items():
        key = labels(alo, partition=partition)
        for name in COUNTER_NAMES:
            exported = samples[f"delivery_sentinel_records_{name}_total"][key]
            # lost_total counts every record ever declared lost: lost + late never goes down.
            expected = values["lost"] + values["late"] if name == "lost" else values[name]
            assert exported == expected, (name, partition)
        assert samples["delivery_sentinel_records_pending"][key] == values["pending"]
    # Foreign records the ledger could not tie to a partition keep the sum equal to the total.
    foreign = samples["delivery_sentinel_records_foreign_total"]
    assert foreign[labels(alo, partition="unattributed")] == 3
    assert sum(v for k, v in foreign.items() if ("sentinel", alo.name) in k) == 5

    verdicts = {
        dict(k)["verdict"]: v
        for k, v in samples["delivery_sentinel_verdict"].items()
        if ("sentinel", alo.name) in k
    }
    assert verdicts == {"HOLDING": 0, "DEGRADED": 0, "VIOLATED": 1, "STALLED": 0}
    assert samples["delivery_sentinel_up"][labels(alo)] == 1
    assert samples["delivery_sentinel_latency_slo_seconds"][labels(alo)] == alo.slo_p99_ms / 1000
    # No report from the others: down, STALLED, and no counters that could read as a reset.
    amo = sentinels["at-most-once"]
    assert samples["delivery_sentinel_up"][labels(amo)] == 0
    assert samples["delivery_sentinel_verdict"][labels(amo, verdict="STALLED")] == 1
    assert not any(
        ("sentinel", amo.name) in k for k in samples["delivery_sentinel_records_produced_total"]
    )

    buckets = samples["delivery_sentinel_end_to_end_latency_seconds_bucket"]
    by_le = {dict(k)["le"]: v for k, v in buckets.items() if ("sentinel", alo.name) in k}
    assert by_le["0.001"] == 1 and by_le["0.005"] == 2 and by_le["0.1"] == 4
    assert by_le["2.5"] == 5 and by_le["+Inf"] == 5
    assert samples["delivery_sentinel_end_to_end_latency_seconds_count"][labels(alo)] == 5
    e2e_sum = samples["delivery_sentinel_end_to_end_latency_seconds_sum"][labels(alo)]
    assert e2e_sum == pytest.approx(2.0955)
    ack = samples["delivery_sentinel_produce_ack_latency_seconds_count"][labels(alo)]
    assert ack == 0


def test_it_marks_a_silent_checker_down_and_stalled(client, sentinels, redis_url, token):
    eos = sentinels["exactly-once"]
    old = time.time() - 120
    doc = status_doc(eos, "HOLDING", updated_at=old, last_progress_at=old)
    SentinelStore(connect(redis_url), eos.pk).set_status(doc)
    samples = scrape(client, token[1])
    assert samples["delivery_sentinel_up"][labels(eos)] == 0
    assert samples["delivery_sentinel_verdict"][labels(eos, verdict="STALLED")] == 1
    # Its last counters stay exported: a silent sentinel is not a counter reset.
    produced = samples["delivery_sentinel_records_produced_total"]
    assert produced[labels(eos, partition="0")] == 300


def test_it_reads_redis_once_per_scrape(client, sentinels, redis_url, token, monkeypatch):
    for s in sentinels.values():
        SentinelStore(connect(redis_url), s.pk).set_status(status_doc(s))
    commands: list[str] = []
    original = redis.Redis.execute_command

    def counting(self, *args, **options):
        commands.append(str(args[0]))
        return original(self, *args, **options)

    pipelines: list[int] = []
    run_pipeline = redis.client.Pipeline.execute

    def counting_pipeline(self, *args, **options):
        pipelines.append(len(self.command_stack))
        return run_pipeline(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_pipeline)
    scrape(client, token[1])
    # The status documents in one MGET; the consumer groups of every cluster in one pipeline.
    assert commands == ["MGET"]
    assert pipelines == [Cluster.objects.count()]


@pytest.mark.parametrize(
    "header", [None, "Bearer dst_not-a-token", "Basic YWxpY2U6cGFzcw==", "Bearer "]
)
def test_it_refuses_scrapes_without_a_valid_token(client, sentinels, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "error" in response.json()


def test_it_refuses_a_revoked_token(client, sentinels, token):
    row, raw = token
    assert client.get("/metrics", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    row.revoke()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401


def test_it_lets_allowed_addresses_scrape_without_a_token(client, sentinels, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 401
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    assert b"delivery_sentinel_up" in response.content


def test_it_is_closed_by_default(settings):
    assert settings.METRICS_ALLOWED_IPS == []


def test_it_records_when_a_token_was_last_used(client, sentinels, token):
    row, raw = token
    assert row.last_used_at is None
    client.get("/metrics", headers={"Authorization": f"Bearer {raw}"})
    row.refresh_from_db()
    assert row.last_used_at is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=120_000, allow_nan=False), max_size=60))
def test_it_counts_latency_buckets_within_the_histograms_error(values):
    hist = LatencyHistogram()
    hist.record_many(values)
    doc = latency_buckets(hist)
    assert doc["count"] == len(values)
    assert doc["counts"] == sorted(doc["counts"])  # cumulative
    for le, n in zip(LATENCY_BUCKETS_S, doc["counts"], strict=True):
        bound = le * 1000
        surely_below = sum(v <= bound * (1 - 2 * RELATIVE_ERROR) for v in values)
        maybe_below = sum(v <= bound * (1 + 2 * RELATIVE_ERROR) for v in values)
        assert surely_below <= n <= maybe_below, (le, n)


def test_it_keeps_bucket_counts_monotonic_as_a_histogram_grows():
    hist = LatencyHistogram()
    previous = latency_buckets(hist)["counts"]
    for batch in ([0.2, 900.0], [5.0, 5.0, 70_000.0], [0.9, 59_000.0]):
        hist.record_many(batch)
        current = latency_buckets(hist)["counts"]
        assert all(c >= p for c, p in zip(current, previous, strict=True))
        previous = current
    assert set(COUNTERS) >= set(COUNTER_NAMES)


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True),
    value=st.one_of(
        st.integers(min_value=-(2**62), max_value=2**62),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
)
def test_it_renders_byte_for_byte_what_prometheus_client_renders(names, value):
    """The fast renderer against prometheus-client's own generate_latest: label values with
    quotes, backslashes, newlines and any Unicode; integers past Go's exponent switch."""
    hist = LatencyHistogram()
    hist.record_many([1.0, 40.0, 7000.0])
    docs = [
        {
            "name": name,
            "cluster": f'c"{name}\\',
            "topic": f"t\n{name}",
            "semantic": "at-least-once",
            "verdict": "HOLDING",
            "updated_at": time.time(),
            "totals": counts(foreign=7),
            "partitions": {"0": counts(produced=value, acked=10**7, processed=10**17)},
            "latency_buckets": {
                "le_s": list(LATENCY_BUCKETS_S),
                "e2e": latency_buckets(hist),
                "ack": latency_buckets(hist) | {"sum_s": value},
            },
        }
        for name in names
    ]
    text = exposition(lambda: docs)
    assert text == reference_exposition(lambda: docs)
    assert list(text_string_to_metric_families(text.decode()))


def test_it_exports_unresolved_incidents_by_severity(client, sentinels, token):
    from dashboard.models import Incident
    from dashboard.models.oncall import ACKNOWLEDGED, RESOLVED, AlertRule

    alo = sentinels["at-least-once"]
    base = {"sentinel": alo, "cluster": "local", "topic": alo.topic}
    base |= {"semantic": alo.semantic, "reason": "x"}
    for kind, severity, state in (
        ("violated", "critical", "open"),
        ("stalled", "critical", ACKNOWLEDGED),
        ("degraded", "warning", RESOLVED),
    ):  # one unresolved incident per rule at most
        rule = AlertRule.objects.create(sentinel=alo, kind=kind, severity=severity)
        Incident.objects.create(rule=rule, kind=kind, severity=severity, state=state, **base)
    samples = scrape(client, token[1])["delivery_sentinel_incidents_open"]
    assert samples == {(("severity", "critical"),): 2.0, (("severity", "warning"),): 0.0}


def test_it_exports_consumer_groups_with_group_topic_and_partition_labels(
    client, sentinels, redis_url, token
):
    from workers.engine.groups import GroupObservation, PartitionObservation, advance
    from workers.store.groups import GroupStore

    cluster = next(iter(sentinels.values())).cluster.name
    store = GroupStore(connect(redis_url), cluster)
    store.forget()
    state = None
    for t, start in ((1.0, 0), (2.0, 30)):
        part = PartitionObservation("orders", 3, 10, start, 100, unread_ts_ms=0)
        state, events = advance(state, GroupObservation("billing", t, "Empty", (), (part,)))
        store.save_sample([state], events, [], {"t": t})
    try:
        got = scrape(client, token[1])
    finally:
        store.forget()
    where = tuple(sorted({"cluster": cluster, "group": "billing", "topic": "orders",
                          "partition": "3"}.items()))  # fmt: skip
    assert got["delivery_sentinel_consumergroup_group_lag"][where] == 70
    assert got["delivery_sentinel_consumergroup_group_lag_seconds"][where] == 2.0
    assert got["delivery_sentinel_consumergroup_group_offset"][where] == 10
    assert got["delivery_sentinel_consumergroup_records_lost_total"][where] == 20
    assert got["delivery_sentinel_consumergroup_records_skipped_total"][where] == 0
    group = (("cluster", cluster), ("group", "billing"))
    assert got["delivery_sentinel_consumergroup_members"][group] == 0
    status = got["delivery_sentinel_consumergroup_status"]
    assert status[tuple(sorted((*group, ("status", "STOPPED"))))] == 1
    assert status[tuple(sorted((*group, ("status", "OK"))))] == 0
