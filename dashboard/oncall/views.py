"""On-call pages: incidents (list, timeline, acknowledge, resolve), channels (settings, test
notification, send log, re-enable), silences, a sentinel's alert rules and a cluster's consumer
group rules.

Views stay thin: the lifecycle is ``dashboard.oncall.evaluation`` (acknowledge / resolve record
the user and notify through the dispatcher the views pass, ``tasks.dispatch_notification``),
test sends are ``dashboard.oncall.notification``, validation is ``dashboard.oncall.forms``. Every POST redirects (POST,
redirect, GET) with a message. Secrets never reach a page: channels are shown with
``Channel.masked_config()``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard import formatting
from dashboard.metrics.overview import unacknowledged_note
from dashboard.metrics.windows import RANGE_LABELS, RANGES
from dashboard.models import Channel, Cluster, GroupRule, Incident, Sentinel, Silence
from dashboard.models.metrics import MetricWindow
from dashboard.models.oncall import INCIDENT_STATES, OPEN, RESOLVED, ensure_rules
from dashboard.oncall import evaluation, notification, services
from dashboard.oncall.forms import ChannelForm, GroupRuleForm, RuleForm, SilenceForm
from dashboard.oncall.services import open_first
from dashboard.oncall.tasks import dispatch_notification
from dashboard.oncall.transports import TRANSPORTS
from workers.engine.alerts import RULE_KINDS
from workers.engine.documents import COUNTERS, EVENT_COUNTERS, FORBIDDEN, SEMANTICS
from workers.engine.group_alerts import COUNTED, GROUP_RULE_KINDS
from workers.engine.redact import MASK

INCIDENTS_PER_PAGE = 50
CHANNEL_SENDS_SHOWN = 20
# One-minute windows shown around an incident on its page.
WINDOWS_BEFORE_S = 5 * 60
WINDOWS_SHOWN = 30


# -- incidents ----------------------------------------------------------------------------------


@login_required
def incident_list(request: HttpRequest) -> HttpResponse:
    """Open and acknowledged first; ``?cluster=&semantic=&state=`` filter."""
    queryset = Incident.objects.select_related("acknowledged_by", "sentinel")
    filters = {k: request.GET.get(k, "").strip() for k in ("cluster", "semantic", "state")}
    problems = []
    if filters["cluster"]:
        queryset = queryset.filter(cluster=filters["cluster"])
    if filters["semantic"]:
        if filters["semantic"] in SEMANTICS:
            queryset = queryset.filter(semantic=filters["semantic"])
        else:
            problems.append(f"unknown semantic {filters['semantic']!r}: not filtered by it")
            filters["semantic"] = ""
    if filters["state"]:
        if filters["state"] == "unresolved":
            queryset = queryset.exclude(state=RESOLVED)
        elif filters["state"] in INCIDENT_STATES:
            queryset = queryset.filter(state=filters["state"])
        else:
            problems.append(f"unknown state {filters['state']!r}: not filtered by it")
            filters["state"] = ""
    page = Paginator(open_first(queryset), INCIDENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "oncall/incidents.html",
        {
            "page": page,
            "filters": filters,
            "query": query,
            "problems": problems,
            "clusters": Incident.objects.order_by("cluster")
            .values_list("cluster", flat=True)
            .distinct(),
            "semantics": SEMANTICS,
            "states": ("unresolved", *INCIDENT_STATES),
        },
    )


def detail_range(incident: Incident, now: float | None = None) -> str:
    """The shortest range of the sentinel's detail page that reaches back to the incident's
    start (the detail page's ranges end now)."""
    now = time.time() if now is None else now
    age = now - incident.opened_at.timestamp() + 60
    for name, seconds in RANGES.items():
        if name != "live" and seconds >= age:
            return name
    return "7d"


def triggering_windows(incident: Incident) -> list[dict[str, Any]]:
    """The sentinel's one-minute windows from a few minutes before the incident opened to
    its last firing (or now), with the counters its rule is about."""
    start = incident.opened_at.timestamp() - WINDOWS_BEFORE_S
    end = (incident.resolved_at or incident.last_firing_at).timestamp() + 60
    rows = MetricWindow.objects.filter(
        sentinel_id=incident.sentinel_id,
        resolution=60,
        start__gte=datetime.fromtimestamp(start, UTC),
        start__lte=datetime.fromtimestamp(end, UTC),
    ).order_by("start")[:WINDOWS_SHOWN]
    columns = incident_columns(incident)
    return [
        {
            "start": w.start,
            "verdict": w.verdict,
            "processed": w.counts.get("processed", 0),
            "problems": {k: w.counts.get(k, 0) for k in columns},
            "problem": any(w.counts.get(k, 0) for k in columns),
            "p99": formatting.latency_ms((w.latency.get("e2e") or {}).get("p99")),
        }
        for w in rows
    ]


def incident_columns(incident: Incident) -> list[str]:
    """The counters an incident's windows table shows: the ones its kind is about (its
    ``counts``: "21 lost" shows lost, whatever the semantic forbids) and the semantic's
    forbidden ones, problem counters first in their usual order."""
    wanted = set(FORBIDDEN.get(incident.semantic, ())) | {
        k for k in (incident.counts or {}) if k in COUNTERS
    }
    order = list(EVENT_COUNTERS) + [k for k in COUNTERS if k not in EVENT_COUNTERS]
    return [k for k in order if k in wanted]


@login_required
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(
        Incident.objects.select_related("sentinel", "acknowledged_by", "resolved_by", "rule"),
        pk=pk,
    )
    range_name = detail_range(incident)
    of_sentinel = incident.sentinel_id is not None
    return render(
        request,
        "oncall/incident.html",
        {
            "incident": incident,
            "kind_label": RULE_KINDS.get(incident.kind)
            or GROUP_RULE_KINDS.get(incident.kind, incident.kind),
            "events": incident.events.select_related("channel", "user").order_by("at", "pk"),
            "windows": triggering_windows(incident) if of_sentinel else [],
            "forbidden": incident_columns(incident),
            "partition_offsets": incident.kind in COUNTED,
            "detail_url": reverse("sentinel-detail", args=[incident.sentinel_id])
            + f"?range={range_name}"
            if of_sentinel
            else "",
            "detail_range": RANGE_LABELS[range_name],
            "OPEN": OPEN,
            "RESOLVED": RESOLVED,
        },
    )


def back_to(request: HttpRequest, fallback: str) -> str:
    """Where a form asked to return (``next``: the card's Acknowledge returns to its page), if
    it is a path of this site; else ``fallback``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


@login_required
@require_POST
def incident_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """From the incident page or a card's latched line (which passes ``next``)."""
    incident = get_object_or_404(Incident, pk=pk)
    if evaluation.acknowledge(incident, request.user, dispatch=dispatch_notification):
        messages.success(request, f"Incident #{pk} acknowledged by {request.user}.")
    else:
        messages.warning(request, f"Incident #{pk} was not open: nothing acknowledged.")
    return redirect(back_to(request, reverse("oncall:incident", args=[pk])))


@never_cache
@login_required
@require_GET
def live_fragments(request: HttpRequest) -> HttpResponse:
    """What a live page redraws after an on-call event (``oncall_live.js``), rendered by the
    templates of the first render: ``block`` (the overview's on-call box; "" with
    ``?sentinel=``), ``latched`` (sentinel id -> its latched lines), ``note`` (the tab
    title's "N not acknowledged"), ``alarm`` and ``unacknowledged`` (the favicon). With
    ``?sentinel=id``, of that sentinel only (its detail page)."""
    raw = request.GET.get("sentinel", "")
    sentinel_id = int(raw) if raw.isdigit() else None
    state = services.live_state(sentinel_id)
    back = reverse("sentinel-detail", args=[sentinel_id]) if sentinel_id else reverse("home")
    latched = {
        str(sid): render_to_string(
            "oncall/_latched.html",
            {"latched": entries, "back": back, "small": sentinel_id is None},
            request=request,
        )
        for sid, entries in state["latched"].items()
    }
    block = "" if sentinel_id else render_to_string("oncall/_overview_block.html", state, request)
    return JsonResponse(
        {
            "block": block,
            "latched": latched,
            "note": unacknowledged_note(state["unacknowledged"]),
            "alarm": state["alarm"],
            "unacknowledged": state["unacknowledged"],
        }
    )


@login_required
@require_POST
def incident_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    note = request.POST.get("note", "").strip()[:2000]
    if evaluation.resolve(incident, request.user, note, dispatch=dispatch_notification):
        messages.success(request, f"Incident #{pk} resolved by {request.user}.")
    else:
        messages.warning(request, f"Incident #{pk} was already resolved.")
    return redirect("oncall:incident", pk=pk)


# -- channels -----------------------------------------------------------------------------------


def masked(channel: Channel) -> dict[str, Any]:
    """The channel's settings for a page: secrets masked; every value masked for a kind no
    integration knows (set in the admin), since nothing says which of them are secret."""
    if channel.kind in TRANSPORTS:
        return channel.masked_config()
    return {k: MASK for k in channel.config}


@login_required
def channel_list(request: HttpRequest) -> HttpResponse:
    channels = [
        {"c": c, "label": getattr(TRANSPORTS.get(c.kind), "label", c.kind), "config": masked(c)}
        for c in Channel.objects.all()
    ]
    return render(request, "oncall/channels.html", {"channels": channels})


@login_required
def channel_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create (``pk`` None) or edit a channel, its integration's settings validated by it."""
    channel = get_object_or_404(Channel, pk=pk) if pk is not None else None
    form = ChannelForm(request.POST if request.method == "POST" else None, instance=channel)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Saved channel {saved}.")
        return redirect("oncall:channel", pk=saved.pk)
    context: dict[str, Any] = {"form": form, "channel": channel}
    if channel is not None:
        context["sends"] = (
            channel.sends.select_related("incident", "user")
            .exclude(result="pending")
            .order_by("-at", "-pk")[:CHANNEL_SENDS_SHOWN]
        )
        context["last_test"] = request.session.pop(f"channel-test-{channel.pk}", None)
    return render(request, "oncall/channel.html", context)


@login_required
@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a test notification now and show its result on the channel page."""
    channel = get_object_or_404(Channel, pk=pk)
    event = notification.send_test(channel, request.user)
    detail = f"{event.result}"
    if event.status_code:
        detail += f", HTTP {event.status_code}"
    if event.duration_ms is not None:
        detail += f", {event.duration_ms:.0f} ms"
    if event.error:
        detail += f": {event.error}"
    request.session[f"channel-test-{pk}"] = {"result": event.result, "detail": detail}
    level = messages.SUCCESS if event.result == "ok" else messages.ERROR
    messages.add_message(request, level, f"Test notification to {channel}: {detail}")
    return redirect("oncall:channel", pk=pk)


@login_required
@require_POST
def channel_enable(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=pk)
    channel.enabled = True
    channel.disabled_reason = ""
    channel.save(update_fields=["enabled", "disabled_reason"])
    messages.success(request, f"Channel {channel} enabled again.")
    return redirect("oncall:channel", pk=pk)


# -- silences -----------------------------------------------------------------------------------


@login_required
def silence_list(request: HttpRequest) -> HttpResponse:
    """Active and past silences; POST creates one (``created_by`` the user)."""
    form = SilenceForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        silence = form.save(commit=False)
        silence.created_by = request.user
        silence.save()
        messages.success(request, f"Created {silence}.")
        return redirect("oncall:silences")
    now = timezone.now()
    related = Silence.objects.select_related("cluster", "sentinel", "created_by")
    return render(
        request,
        "oncall/silences.html",
        {
            "form": form,
            "active": related.filter(ends_at__gt=now).order_by("ends_at"),
            "past": related.filter(ends_at__lte=now).order_by("-ends_at")[:50],
        },
    )


@login_required
@require_POST
def silence_end(request: HttpRequest, pk: int) -> HttpResponse:
    silence = get_object_or_404(Silence, pk=pk, ends_at__gt=timezone.now())
    silence.ends_at = timezone.now()
    silence.save(update_fields=["ends_at"])
    messages.success(request, f"Ended {silence}.")
    return redirect("oncall:silences")


# -- rules --------------------------------------------------------------------------------------


@login_required
def sentinel_rules(request: HttpRequest, sentinel_id: int) -> HttpResponse:
    """A sentinel's alert rules (the defaults are created first), all saved at once."""
    sentinel = get_object_or_404(Sentinel.objects.select_related("cluster"), pk=sentinel_id)
    rules = ensure_rules(sentinel)
    data = request.POST if request.method == "POST" else None
    forms = [RuleForm(data, instance=rule, prefix=f"rule-{rule.pk}") for rule in rules]
    if request.method == "POST" and all(f.is_valid() for f in forms):
        for form in forms:
            form.save()
        messages.success(request, f"Saved the alert rules of {sentinel}.")
        return redirect("oncall:rules", sentinel_id=sentinel.pk)
    return render(
        request,
        "oncall/rules.html",
        {
            "sentinel": sentinel,
            "forms": [(f, RULE_KINDS.get(f.instance.kind, f.instance.kind)) for f in forms],
            "has_errors": any(f.errors for f in forms),
            "no_channels": not Channel.objects.exists(),
        },
    )


@login_required
def group_rules(request: HttpRequest, cluster: str) -> HttpResponse:
    """A cluster's consumer group rules; POST adds one (its kind's defaults, every channel
    ticked unless others are)."""
    found = get_object_or_404(Cluster, name=cluster)
    form = GroupRuleForm(
        request.POST if request.method == "POST" else None,
        new=True,
        initial={"include": "*", "channels": list(Channel.objects.filter(enabled=True))},
    )
    if request.method == "POST":
        if form.is_valid():
            form.instance.cluster = found
            rule = form.save()
            messages.success(request, f"Added the group rule {rule}.")
            return redirect("oncall:group-rules", cluster=found.name)
        messages.error(request, "The rule was not added: please correct what is marked below.")
    rules = GroupRule.objects.filter(cluster=found).prefetch_related("channels")
    return render(
        request,
        "oncall/group_rules.html",
        {
            "cluster": found,
            "rules": [(r, GROUP_RULE_KINDS.get(r.kind, r.kind)) for r in rules],
            "form": form,
            "no_channels": not Channel.objects.exists(),
        },
    )


@login_required
def group_rule_edit(request: HttpRequest, cluster: str, pk: int) -> HttpResponse:
    rule = get_object_or_404(
        GroupRule.objects.select_related("cluster"), pk=pk, cluster__name=cluster
    )
    form = GroupRuleForm(request.POST if request.method == "POST" else None, instance=rule)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Saved the group rule {rule}.")
        return redirect("oncall:group-rules", cluster=cluster)
    return render(
        request,
        "oncall/group_rule.html",
        {"rule": rule, "label": GROUP_RULE_KINDS.get(rule.kind, rule.kind), "form": form},
    )


@login_required
@require_POST
def group_rule_delete(request: HttpRequest, cluster: str, pk: int) -> HttpResponse:
    """Deletes the rule and its incidents (their pages go with it)."""
    rule = get_object_or_404(GroupRule, pk=pk, cluster__name=cluster)
    name = str(rule)
    rule.delete()
    messages.success(request, f"Deleted the group rule {name}.")
    return redirect("oncall:group-rules", cluster=cluster)
