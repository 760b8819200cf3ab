"""``/metrics`` for a sentinel running on the real cluster: its counters are the status
document's totals, and killing and restarting every process of the sentinel (a new producer
run, a checker restarting from its checkpoint) never makes a counter go down."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from prometheus_client.parser import text_string_to_metric_families

from dashboard.models import ApiToken
from dashboard.prometheus import COUNTER_NAMES
from tests.integration.test_hosting import make_sentinel
from tests.support.sentinels import SentinelProcesses
from tests.support.waiting import wait_until
from workers.engine.profiles import AT_LEAST_ONCE

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db]

ROLES = ("producer", "consumer", "checker")


def scrape(client, raw: str, name: str) -> dict[str, dict[tuple, float]]:
    """This sentinel's samples: ``{sample name: {sorted labels without sentinel: value}}``."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            if s.labels.get("sentinel") == name:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "sentinel"))
                out.setdefault(s.name, {})[key] = s.value
    return out


def monotonic_samples(samples: dict[str, dict[tuple, float]]) -> dict[tuple, float]:
    """Every counter and histogram sample (gauges can go down)."""
    return {
        (name, key): value
        for name, series in samples.items()
        if name.endswith(("_total", "_bucket", "_count", "_sum"))
        for key, value in series.items()
    }


def assert_never_decreased(before: dict, after: dict) -> None:
    went_down = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1) < v}
    assert not went_down, f"counters went down: {went_down}"


def test_it_exports_the_status_totals_and_never_decreases_across_restarts(client, tmp_path):
    sentinel = make_sentinel(AT_LEAST_ONCE)
    _row, raw = ApiToken.issue(get_user_model().objects.create_user("scraper"), "scraper")
    procs = SentinelProcesses(sentinel.to_spec(), tmp_path)
    try:
        for role in ROLES:
            procs.start(role)
        procs.wait_status(
            lambda d: d["totals"]["processed"] >= 30 and d["latency_buckets"]["e2e"]["count"],
            90,
            "records processed",
        )
        before = monotonic_samples(scrape(client, raw, sentinel.name))
        assert before, "no samples for the sentinel"
        processed = procs.status()["totals"]["processed"]

        # Kill every process of the sentinel at once, then start them again: a new producer
        # run, a consumer and a checker resuming from their checkpoints.
        for role in ROLES:
            procs.kill(role)
        for role in ROLES:
            procs.start(role)
        procs.wait_status(
            lambda d: d["runs"] >= 2 and d["totals"]["processed"] > processed + 30,
            90,
            "the restarted sentinel processes records of a new run",
        )
        after = monotonic_samples(scrape(client, raw, sentinel.name))
        assert_never_decreased(before, after)

        assert procs.stop("producer") == 0
        procs.wait_settled()
        samples = scrape(client, raw, sentinel.name)
        doc = procs.status()  # the checker rewrites it every second; totals are settled now
        assert_never_decreased(after, monotonic_samples(samples))
        for name in COUNTER_NAMES:
            exported = sum(samples[f"delivery_sentinel_records_{name}_total"].values())
            totals = doc["totals"]
            expected = totals["lost"] + totals["late"] if name == "lost" else totals[name]
            assert exported == expected, (name, exported, totals)
        partitions = {
            dict(k)["partition"] for k in samples["delivery_sentinel_records_produced_total"]
        }
        assert partitions == set(doc["partitions"]) == {"0", "1", "2"}
        e2e_count = samples["delivery_sentinel_end_to_end_latency_seconds_count"]
        assert list(e2e_count.values()) == [doc["latency_buckets"]["e2e"]["count"]]
        assert doc["latency_buckets"]["e2e"]["count"] == doc["totals"]["processed"]
        up = samples["delivery_sentinel_up"]
        assert list(up.values()) == [1.0]
    finally:
        procs.stop_all()
        wait_until(lambda: not procs.procs, 5, "sentinel processes stopped")
