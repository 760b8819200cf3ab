"""On-call helpers for the tests that page through a real webhook receiver
(pytest-httpserver): the channel, the incident the evaluation opens, what the receiver got."""

from __future__ import annotations

import json

from dashboard.models import Channel, Incident
from dashboard.oncall import evaluation, notification
from tests.support.waiting import wait_until


def webhook_channel(httpserver) -> None:
    """A webhook channel to ``httpserver``, which answers it; make it before the sentinel's
    rules are (the default rules notify the channels there are when they are made)."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    Channel.objects.create(name="hook", kind="webhook", config={"url": httpserver.url_for("/hook")})


def opened(sentinel, kind: str, timeout: float = 60) -> Incident:
    """The sentinel's incident of ``kind``, the on-call evaluation stepped (notifications
    delivered at once) until it opens."""

    def found():
        evaluation.evaluate(dispatch=notification.deliver)
        return Incident.objects.filter(sentinel=sentinel, kind=kind).first()

    return wait_until(found, timeout, f"the {kind} incident")


def received(httpserver) -> tuple[str, str]:
    """The cause and explanation of the first alert the webhook receiver got."""
    wait_until(lambda: httpserver.log, 30, "the trigger at the receiver")
    annotations = json.loads(httpserver.log[0][0].data)["alerts"][0]["annotations"]
    return annotations["cause"], annotations["explanation"]
