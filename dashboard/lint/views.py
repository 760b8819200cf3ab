"""Guarantee lint pages and JSON endpoints (docs/lint.md); thin: ``services`` does the work.

Pages: ``/lint/`` (the first cluster), ``/lint/<cluster>/`` (topics × semantics with findings,
the profiles, and the "check a client config" form), ``POST /lint/<cluster>/run/`` (lint now).
JSON: ``GET /api/lint/?cluster=NAME`` (the latest stored report) and ``POST /api/lint/check/``
(``config``, ``semantic``, ``role``, ``dialect``: a verdict for pasted properties).
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from dashboard import formatting
from dashboard.decorators import api_view
from dashboard.forms import masked_text
from dashboard.lint import services as lint
from workers.engine.documents import SEMANTICS
from workers.engine.lint.client import DIALECTS, LIBRDKAFKA, PRODUCER, ROLES, check_text
from workers.engine.lint.rules import VERDICT_LABELS

MAX_CONFIG_CHARS = 64_000
# The lint verdicts drawn in the sentinels' verdict colours.
VERDICT_CLASS = {"can-hold": "holding", "one-failure-away": "degraded", "cannot-hold": "violated"}


def rows(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per topic, its cells in ``SEMANTICS`` order (templates cannot index a dict)."""
    out = []
    for topic in (report or {}).get("topics", []):
        cells = []
        for sem in SEMANTICS:
            v = topic["verdicts"][sem]
            cells.append({**v, "semantic": sem, "css": VERDICT_CLASS[v["verdict"]]})
        out.append({**topic, "cells": cells})
    return out


def _check(data: Any) -> tuple[dict[str, Any], int]:
    """The check answer for a form or JSON body, or a 400 with a message."""
    text = str(data.get("config") or "")
    if len(text) > MAX_CONFIG_CHARS:
        return {"error": f"config is longer than {MAX_CONFIG_CHARS} characters"}, 400
    try:
        return (
            check_text(
                text,
                str(data.get("role") or PRODUCER),
                str(data.get("semantic") or ""),
                str(data.get("dialect") or LIBRDKAFKA),
            ),
            200,
        )
    except ValueError as exc:  # ConfigSyntaxError too: a message for the user
        return {"error": str(exc)}, 400


# -- JSON ---------------------------------------------------------------------------------------


@api_view
def api_report(request: HttpRequest) -> JsonResponse:
    """The latest stored lint report of ``?cluster=NAME`` (default: the first cluster)."""
    try:
        targets = lint.targets(request.GET.get("cluster") or None)
    except lint.UnknownCluster as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    name = targets[0].name
    report = lint.latest(name)
    if report is None:
        return JsonResponse(
            {"error": f"no lint report for {name} yet (it runs every few minutes)"}, status=404
        )
    return JsonResponse(report)


# The check changes nothing, so a session POST without a CSRF token is harmless; scripts can
# call it without first fetching a token.
@csrf_exempt
@never_cache
@require_POST
def api_check(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "authentication required"}, status=401)
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "the body is not valid JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "expected a JSON object"}, status=400)
    else:
        data = request.POST
    answer, status = _check(data)
    return JsonResponse(answer, status=status)


# -- pages --------------------------------------------------------------------------------------


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return redirect("lint-cluster", cluster=lint.targets()[0].name)


def _target(cluster: str) -> lint.Target:
    try:
        return lint.targets(cluster)[0]
    except lint.UnknownCluster as exc:
        raise Http404(str(exc)) from None


@login_required
def cluster_page(request: HttpRequest, cluster: str) -> HttpResponse:
    target = _target(cluster)
    form = {"config": "", "semantic": SEMANTICS[1], "role": PRODUCER, "dialect": LIBRDKAFKA}
    check = None
    if request.method == "POST":
        form.update({k: request.POST.get(k, v) for k, v in form.items()})
        form["config"] = masked_text(form["config"])
        check, _ = _check(request.POST)
        if "verdict" in check:
            check["css"] = VERDICT_CLASS[check["verdict"]]
    report = lint.latest(target.name)
    return render(
        request,
        "dashboard/lint.html",
        {
            "cluster": target.name,
            "clusters": [t.name for t in lint.targets()],
            "report": report,
            "ran": formatting.clock((report or {}).get("generated_at"), time.time()),
            "rows": rows(report),
            "verdict_class": VERDICT_CLASS,
            "semantics": SEMANTICS,
            "labels": VERDICT_LABELS,
            "form": form,
            "check": check,
            "roles": ROLES,
            "dialects": DIALECTS,
        },
    )


@login_required
@require_POST
def run_now(request: HttpRequest, cluster: str) -> HttpResponse:
    target = _target(cluster)
    report = lint.run_claimed(target)
    if report is None:
        messages.info(request, f"A lint of {target.name} is already running.")
    elif report["error"]:
        messages.error(request, f"Could not read {target.name}: {report['error']}")
    else:
        messages.success(request, f"Linted {target.name}: {len(report['topics'])} topics.")
    return redirect("lint-cluster", cluster=target.name)
