"""The shipped monitoring: Prometheus config and alert rules (checked and unit-tested by
promtool), the Grafana dashboard JSON, and every metric they use is one ``/metrics`` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.models import ApiToken
from tests.support.dashboard_data import fresh_defaults, hist, status_doc, wipe
from workers.engine.documents import LATENCY_BUCKETS_S, latency_buckets
from workers.engine.groups import GroupObservation, PartitionObservation, advance
from workers.store.connection import connect
from workers.store.groups import GroupStore
from workers.store.sentinel import SentinelStore

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "docker" / "prometheus"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "delivery-sentinel.json"
METRIC = re.compile(r"\bdelivery_sentinel_[a-z_]+\b")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: bin/install --dev installs Debian's prometheus package"
    done = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_it_ships_alert_rules_that_promtool_accepts():
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", "alerts.yml")


def test_it_fires_each_alert_on_what_it_mirrors():
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_it_ships_a_valid_scrape_config(tmp_path):
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/etc/prometheus/" in config
    (tmp_path / "token").write_text("dst_example")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/", f"{tmp_path}/"))
    out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in out


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and doc["panels"]
    exprs = [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= len(doc["panels"]), "every panel queries something"
    assert {p["type"] for p in doc["panels"]} >= {"stat", "timeseries", "heatmap"}
    return exprs + [v["definition"] for v in doc["templating"]["list"]]


def rule_exprs() -> list[str]:
    return [(PROMETHEUS / "alerts.yml").read_text()]


@pytest.mark.django_db
def test_it_exports_every_metric_the_dashboard_and_rules_use(client, redis_url, alice):
    made = fresh_defaults(redis_url)
    try:
        sentinel = made["at-least-once"]
        buckets = {"le_s": list(LATENCY_BUCKETS_S), "e2e": latency_buckets(hist(5.0))}
        buckets["ack"] = buckets["e2e"]
        doc = status_doc(sentinel, latency_buckets=buckets)
        SentinelStore(connect(redis_url), sentinel.pk).set_status(doc)
        # One consumer group sampled on the sentinel's cluster, for the groups' rules.
        groups = GroupStore(connect(redis_url), sentinel.cluster.name)
        part = PartitionObservation("orders", 0, 10, 0, 20, unread_ts_ms=0)
        state, _ = advance(None, GroupObservation("billing", 1.0, "Empty", (), (part,)))
        groups.save_sample([state], [], [], {"t": 1.0})
        _row, raw = ApiToken.issue(alice, "monitoring")
        body = client.get("/metrics", headers={"Authorization": f"Bearer {raw}"}).content
        exported = {
            s.name
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
    finally:
        wipe(redis_url, made)
        GroupStore(connect(redis_url), made["at-least-once"].cluster.name).forget()
    for source, exprs in (("dashboard", dashboard_exprs()), ("rules", rule_exprs())):
        used = {m for e in exprs for m in METRIC.findall(e)}
        assert used, source
        missing = used - exported
        assert not missing, f"{source} uses metrics /metrics does not export: {missing}"
