"""``GET /metrics``: the sentinels' state in the Prometheus text format (docs/metrics.md).

A custom collector reads the status documents at scrape time (``all_statuses``: one query and
one Redis round trip for every sentinel); nothing is counted in this process, so there is no
multiprocess mode and every web process answers the same.

Access: a personal API token (``Authorization: Bearer``, any scope) or a client address listed
in ``METRICS_ALLOWED_IPS``; closed by default.
"""

from __future__ import annotations

import gc
import ipaddress
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from dashboard.groups import services as groups
from dashboard.models import ApiToken, Sentinel
from dashboard.status import all_statuses
from workers.engine.documents import COUNTERS, STALE_AFTER_S, Verdict, reported_within

NAMESPACE = "delivery_sentinel"
SENTINEL_LABELS = ("sentinel", "cluster", "topic", "semantic")
PARTITION_LABELS = (*SENTINEL_LABELS, "partition")
VERDICT_LABELS = (*SENTINEL_LABELS, "verdict")
BUCKET_LABELS = (*SENTINEL_LABELS, "le")
# Every checker counter but pending (a level), as Prometheus counters.
COUNTER_NAMES = tuple(name for name in COUNTERS if name != "pending")
# Foreign records the ledger could not tie to a partition (``Checker.foreign``).
UNATTRIBUTED = "unattributed"
HISTOGRAMS = {
    "e2e": ("end_to_end_latency_seconds", "produce() call to processing"),
    "ack": ("produce_ack_latency_seconds", "produce() call to delivery report"),
}


def counter_values(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per partition (and ``unattributed``), the exported counter values of a status document.

    ``lost`` is exported as every record ever declared lost (``lost + late``): the checker
    moves a record from lost to late when it turns up, and a Prometheus counter must never go
    down. Currently lost records are ``lost_total - late_total``."""
    out: dict[str, dict[str, int]] = {}
    for partition, counts in (doc.get("partitions") or {}).items():
        values = {name: int(counts.get(name, 0)) for name in COUNTER_NAMES}
        values["lost"] += int(counts.get("late", 0))
        out[partition] = values
    attributed = sum(v["foreign"] for v in out.values())
    rest = int((doc.get("totals") or {}).get("foreign", 0)) - attributed
    if rest > 0:
        out[UNATTRIBUTED] = {name: 0 for name in COUNTER_NAMES} | {"foreign": rest}
    return out


def is_up(doc: dict[str, Any], now: float) -> bool:
    """The sentinel's checker reported within ``STALE_AFTER_S`` (the staleness that turns the
    read status STALLED, ``workers.engine.documents.as_read``)."""
    return reported_within(doc, now)


@dataclass
class Family:
    """One metric family as plain data: ``samples`` are ``(suffix, label names, label values,
    value)``; the sample's name is the family's name plus ``suffix`` (``_total``, ``_bucket``...)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, tuple[str, ...], tuple[str, ...], float]] = field(default_factory=list)

    def metric(self) -> Metric:
        """The same family as prometheus-client's ``Metric`` (for its ``generate_latest``)."""
        metric = Metric(self.name, self.help, self.kind)
        for suffix, names, values, value in self.samples:
            metric.add_sample(self.name + suffix, dict(zip(names, values, strict=True)), value)
        return metric


def families(docs: list[dict[str, Any]], slos: dict[str, float], now: float) -> list[Family]:
    """Every metric family of ``docs`` (status documents); ``slos``: p99 objective (ms) by
    sentinel name."""
    counters = {
        name: Family(f"{NAMESPACE}_records_{name}", "counter", f"Records {name.replace('_', ' ')}")
        for name in COUNTER_NAMES
    }
    pending = Family(
        f"{NAMESPACE}_records_pending",
        "gauge",
        "Records acked and not processed yet, not (yet) declared lost",
    )
    verdict = Family(
        f"{NAMESPACE}_verdict", "gauge", "1 for the sentinel's current verdict, 0 for the others"
    )
    slo = Family(
        f"{NAMESPACE}_latency_slo_seconds",
        "gauge",
        "The sentinel's end-to-end latency p99 objective (its verdict is DEGRADED above it)",
    )
    up = Family(
        f"{NAMESPACE}_up",
        "gauge",
        f"1 when the sentinel's checker reported within the last {STALE_AFTER_S:.0f} s",
    )
    hists = {
        kind: Family(f"{NAMESPACE}_{name}", "histogram", f"{help_} (per sentinel)")
        for kind, (name, help_) in HISTOGRAMS.items()
    }
    for doc in docs:
        labels = sentinel_labels(doc)
        for partition, values in counter_values(doc).items():
            plabels = (*labels, partition)
            for name, family in counters.items():
                family.samples.append(("_total", PARTITION_LABELS, plabels, values[name]))
        for partition, counts in (doc.get("partitions") or {}).items():
            value = counts.get("pending", 0)
            pending.samples.append(("", PARTITION_LABELS, (*labels, partition), value))
        for v in Verdict:
            one = 1.0 if doc.get("verdict") == v else 0.0
            verdict.samples.append(("", VERDICT_LABELS, (*labels, v.value), one))
        if (objective := slos.get(doc.get("name") or "")) is not None:
            slo.samples.append(("", SENTINEL_LABELS, labels, objective / 1000.0))
        up.samples.append(("", SENTINEL_LABELS, labels, 1.0 if is_up(doc, now) else 0.0))
        for kind, family in hists.items():
            family.samples.extend(histogram_samples(doc, kind, labels))
    return [*counters.values(), pending, verdict, slo, up, *hists.values()]


def incident_family() -> Family:
    """Unresolved incidents by severity (``dashboard/oncall/evaluation.py``), 0 for a severity with
    none, so an alert on it sees the series go back to 0."""
    from django.db.models import Count

    from dashboard.models import Incident
    from dashboard.models.oncall import RESOLVED
    from workers.engine.alerts import SEVERITIES

    rows = dict(
        Incident.objects.exclude(state=RESOLVED)
        .values_list("severity")
        .annotate(n=Count("pk"))
        .values_list("severity", "n")
    )
    family = Family(
        f"{NAMESPACE}_incidents_open", "gauge", "Incidents not resolved yet, by severity"
    )
    for severity in SEVERITIES:
        family.samples.append(("", ("severity",), (severity,), float(rows.get(severity, 0))))
    return family


def violation_cause_family() -> Family:
    """Violation incidents opened, by the cause their explanation names
    (``workers.engine.explain``; ``none``: no event explained it; ``unknown``: opened before
    violations were explained)."""
    from django.db.models import Count
    from django.db.models.fields.json import KT

    from dashboard.models import Incident
    from workers.engine.alerts import VIOLATED

    rows = (
        Incident.objects.filter(kind=VIOLATED)
        .annotate(cause=KT("explanation__cause"))
        .values_list("cause")
        .annotate(n=Count("pk"))
        .values_list("cause", "n")
    )
    family = Family(
        f"{NAMESPACE}_violations", "counter", "Violation incidents opened, by explained cause"
    )
    counts: dict[str, int] = {}
    for cause, n in rows:
        counts[cause or "unknown"] = counts.get(cause or "unknown", 0) + n
    for cause, n in sorted(counts.items()):
        family.samples.append(("_total", ("cause",), (cause,), float(n)))
    return family


GROUP_LABELS = ("cluster", "group")
GROUP_PARTITION_LABELS = ("cluster", "group", "topic", "partition")


def group_families(states: dict[str, dict[str, Any]]) -> list[Family]:
    """The consumer groups' families (docs/metrics.md, "Consumer groups"): ``states`` is cluster
    name -> group name -> ``GroupState`` (the group watcher's, one Redis read per cluster)."""
    from workers.engine.groups import EVENT_KINDS, STATUS_ORDER

    prefix = f"{NAMESPACE}_consumergroup"
    lag = Family(f"{prefix}_group_lag", "gauge", "Records the group has left to read")
    lag_s = Family(
        f"{prefix}_group_lag_seconds",
        "gauge",
        "Age of the first record the group has left to read (0 when caught up; measured, never extrapolated)",
    )
    offset = Family(f"{prefix}_group_offset", "gauge", "The group's committed offset")
    counts = {
        kind: Family(f"{prefix}_records_{kind}", "counter", f"Records {kind} (docs/groups.md)")
        for kind in EVENT_KINDS
    }
    members = Family(f"{prefix}_members", "gauge", "Live members of the group")
    status = Family(
        f"{prefix}_status", "gauge", "1 for the group's current status, 0 for the others"
    )
    for cluster, found in sorted(states.items()):
        for name, state in found.items():
            glabels = (cluster, name)
            members.samples.append(("", GROUP_LABELS, glabels, float(len(state.members))))
            current = state.status
            for each in STATUS_ORDER:
                one = 1.0 if each == current else 0.0
                status.samples.append(("", (*GROUP_LABELS, "status"), (*glabels, each), one))
            for p in state.partitions.values():
                plabels = (cluster, name, p.topic, str(p.partition))
                lag.samples.append(("", GROUP_PARTITION_LABELS, plabels, float(p.lag)))
                if p.lag_s is not None:
                    lag_s.samples.append(("", GROUP_PARTITION_LABELS, plabels, p.lag_s))
                offset.samples.append(("", GROUP_PARTITION_LABELS, plabels, float(p.committed)))
                for kind, family in counts.items():
                    value = float(getattr(p, kind))
                    family.samples.append(("_total", GROUP_PARTITION_LABELS, plabels, value))
    return [lag, lag_s, offset, *counts.values(), members, status]


def sentinel_labels(doc: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(doc.get(k) or "") for k in ("name", "cluster", "topic", "semantic"))


def histogram_samples(
    doc: dict[str, Any], kind: str, labels: tuple[str, ...]
) -> list[tuple[str, tuple[str, ...], tuple[str, ...], float]]:
    data = doc.get("latency_buckets")
    if not data:  # a placeholder, or a checker older than the field
        return []
    hist = data[kind]
    bounds = [*(_le(b) for b in data["le_s"]), "+Inf"]
    counts = [*hist["counts"], hist["count"]]
    return [
        *(
            ("_bucket", BUCKET_LABELS, (*labels, le), n)
            for le, n in zip(bounds, counts, strict=True)
        ),
        ("_count", SENTINEL_LABELS, labels, hist["count"]),
        ("_sum", SENTINEL_LABELS, labels, hist["sum_s"]),
    ]


def _le(seconds: float) -> str:
    return floatToGoString(seconds)


class SentinelCollector(Collector):
    """prometheus-client's view of ``families``: the status documents, read once per scrape."""

    def __init__(self, statuses: Any = all_statuses) -> None:
        self.statuses = statuses

    def families(self) -> list[Family]:
        docs = self.statuses()
        slos = dict(Sentinel.objects.values_list("name", "slo_p99_ms"))
        found = groups.all_groups()
        return [
            *families(docs, slos, time.time()),
            incident_family(),
            violation_cause_family(),
            *group_families(found),
        ]

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.metric()


def exposition(statuses: Any = all_statuses) -> bytes:
    return render(SentinelCollector(statuses).families())


def reference_exposition(statuses: Any = all_statuses) -> bytes:
    """The same text through prometheus-client's own ``generate_latest`` (what ``render`` is
    checked against)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SentinelCollector(statuses))
    return generate_latest(registry)


def render(source: list[Family]) -> bytes:
    """``generate_latest`` of the same families, byte for byte, in a fraction of its time.

    ``generate_latest`` validates and escapes every label of every sample (~10 us a sample;
    ~200 ms for 100 sentinels of 12 partitions, 18,600 samples). Here a label set is rendered
    once and reused by every sample that carries it (the 12 counters and gauges of a
    partition, the samples of a histogram). ``tests/test_prometheus.py`` checks the equality.
    """
    out: list[str] = []
    labelstrs: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for family in source:
        name = family.name + ("_total" if family.kind == "counter" else "")
        doc = family.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {family.kind}\n")
        for suffix, names, values, value in family.samples:
            labelstr = labelstrs.get((names, values))
            if labelstr is None:
                labelstr = labelstrs[(names, values)] = _labelstr(names, values)
            out.append(f"{family.name}{suffix}{labelstr} {_number(value)}\n")
    return "".join(out).encode("utf-8")


def _number(value: float) -> str:
    # floatToGoString(n) is repr(float(n)) for integers below 1e6 (Go switches to exponents
    # from there on): most counters, at a fraction of the cost.
    if type(value) is int and -(10**15) < value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


def _labelstr(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# -- access ---------------------------------------------------------------------------------


def allowed_address(address: str | None) -> bool:
    """Whether ``address`` is in ``METRICS_ALLOWED_IPS`` (addresses or networks)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in allowed_networks())


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(v, strict=False) for v in settings.METRICS_ALLOWED_IPS]


def bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    raw = bearer(request)
    if raw is not None:
        if ApiToken.authenticate(raw) is None:
            return JsonResponse({"error": "invalid or revoked token"}, status=401)
    elif not allowed_address(request.META.get("REMOTE_ADDR")):
        return JsonResponse(
            {"error": "a bearer token or an address in METRICS_ALLOWED_IPS is required"},
            status=401,
        )
    with gc_paused():
        body = exposition()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Defer the cyclic garbage collector while a scrape runs.

    A scrape allocates ~20,000 short-lived tuples and strings for 100 sentinels; they go away
    by reference counting, but their allocation triggers collections, and a full one walks
    every object of the Django process: it doubled the p99 (bench/metrics_bench.py). Nothing
    a scrape allocates is cyclic, so the collection only moves to after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
