"""Notification integrations: one class per integration, all in ``TRANSPORTS``.

``send(notice)`` delivers one notice or raises ``TransportError(message, permanent=...)``;
a permanent error (a 4xx other than 429, an invalid routing key, a refused address) disables
the channel, a transient one is retried with backoff by the HTTP session (network errors,
429 and 5xx: ``RETRIES`` times) and then reported. Outbound URLs that resolve to loopback,
private or link-local addresses are refused unless ``ONCALL_ALLOW_PRIVATE_URLS`` is on (tests
and the local stack). What was sent and what came back is the caller's to record; secrets
(webhook URLs carry tokens, routing keys) never appear in a message.

Adding an integration: a ``Transport`` subclass with ``kind``, ``label``, ``fields`` (its
settings, the secret ones in ``secret_fields``), ``validate()`` and ``send()``, registered in
``TRANSPORTS``; the channel form and pages pick it up from there.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from workers.clientsecrets import SecretError, unseal
from workers.engine.alerts import (
    ACKNOWLEDGE,
    RESOLVE,
    Notice,
    alertmanager_body,
    pagerduty_body,
    slack_body,
)
from workers.engine.redact import MASK

RETRIES = 3
BACKOFF_S = 0.5
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status


def check_url(url: str) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a loopback, private,
    link-local or otherwise internal address (unless ``ONCALL_ALLOW_PRIVATE_URLS``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError("the URL must be http:// or https:// with a host", permanent=True)
    if settings.ONCALL_ALLOW_PRIVATE_URLS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {parts.hostname}: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            raise TransportError(
                f"refused: {parts.hostname} resolves to {address}, an internal address "
                "(ONCALL_ALLOW_PRIVATE_URLS allows it)",
                permanent=True,
            )


def http_session() -> requests.Session:
    """Bounded retries with exponential backoff on connection errors, 429 and 5xx. A read
    that times out is not retried: the receiver may have acted on it, and a hanging receiver
    must cost one timeout, not several."""
    retry = Retry(
        total=RETRIES,
        connect=RETRIES,
        read=0,
        status=RETRIES,
        backoff_factor=BACKOFF_S,
        backoff_max=10,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def post_json(url: str, body: dict[str, Any]) -> requests.Response:
    check_url(url)
    timeout = (settings.ONCALL_CONNECT_TIMEOUT_S, settings.ONCALL_READ_TIMEOUT_S)
    host = urlsplit(url).hostname
    try:
        with http_session() as session:
            response = session.post(url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        # With retries, a timeout arrives wrapped: MaxRetryError(reason=ReadTimeoutError).
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.Timeout) or isinstance(reason, TimeoutError | ReadTimeoutError):
            raise TransportError(f"{host} did not answer within {timeout[1]:g} s") from None
        # The exception text can repeat the URL, and with it a token: name the host only.
        raise TransportError(f"cannot reach {host}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        permanent = response.status_code < 500 and response.status_code != 429
        text = response.text[:200].strip()
        raise TransportError(
            f"{host} answered {response.status_code}{': ' + text if text else ''}",
            permanent=permanent,
            status=response.status_code,
        )
    return response


class Transport:
    kind: ClassVar[str]
    label: ClassVar[str]
    # Setting name -> help text, and which of them are secret.
    fields: ClassVar[dict[str, str]]
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any], receiver: str = "delivery-sentinel") -> None:
        self.config = config
        self.receiver = receiver

    def validate(self) -> dict[str, str]:
        """Errors by setting name; empty when the settings are usable."""
        return {name: "required" for name in self.fields if not self.config.get(name)}

    def send(self, notice: Notice) -> int | None:
        """Deliver ``notice``; the HTTP status, if any. Raises TransportError."""
        raise NotImplementedError


class WebhookTransport(Transport):
    kind = "webhook"
    label = "Webhook (Alertmanager format)"
    fields = {"url": "the receiver's URL (it may carry a token: kept secret)"}
    secret_fields = ("url",)

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if not errors:
            try:
                check_url(self.config["url"])
            except TransportError as exc:
                errors["url"] = exc.message
        return errors

    def send(self, notice: Notice) -> int | None:
        return post_json(self.config["url"], alertmanager_body(notice, self.receiver)).status_code


class SlackTransport(WebhookTransport):
    kind = "slack"
    label = "Slack (incoming webhook)"
    fields = {"url": "the incoming webhook URL (kept secret)"}

    def send(self, notice: Notice) -> int | None:
        return post_json(self.config["url"], slack_body(notice)).status_code


class PagerDutyTransport(Transport):
    kind = "pagerduty"
    label = "PagerDuty (Events API v2)"
    fields = {"routing_key": "the service's integration key (kept secret)"}
    secret_fields = ("routing_key",)

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        key = str(self.config.get("routing_key", ""))
        if key and (len(key) != 32 or not key.isalnum()):
            errors["routing_key"] = "a PagerDuty integration key is 32 letters and digits"
        return errors

    def send(self, notice: Notice) -> int | None:
        url = self.config.get("url") or PAGERDUTY_EVENTS_URL
        try:
            return post_json(url, pagerduty_body(notice, self.config["routing_key"])).status_code
        except TransportError as exc:
            if exc.status == 400:
                raise TransportError(
                    f"PagerDuty refused the event (invalid routing key or event): {exc.message}",
                    permanent=True,
                    status=400,
                ) from None
            raise


class EmailTransport(Transport):
    kind = "email"
    label = "Email"
    fields = {"to": "addresses, comma-separated"}

    def recipients(self) -> list[str]:
        return [a.strip() for a in str(self.config.get("to", "")).split(",") if a.strip()]

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if not errors and not all("@" in a for a in self.recipients()):
            errors["to"] = "every address needs an @"
        return errors

    def send(self, notice: Notice) -> int | None:
        state = {ACKNOWLEDGE: "ACKNOWLEDGED", RESOLVE: "RESOLVED"}.get(notice.event, "FIRING")
        body = notice.summary + (f"\n\nWhy: {notice.explanation}" if notice.explanation else "")
        body += f"\n\n{notice.url}" if notice.url else ""
        if notice.by:
            body += f"\n\n{state.lower()} by {notice.by}"
        try:
            send_mail(
                f"[{state}] {notice.severity}: {notice.summary[:150]}",
                body,
                None,
                self.recipients(),
            )
        except (OSError, Exception) as exc:  # smtplib errors are OSError or SMTPException
            raise TransportError(f"mail not sent: {type(exc).__name__}: {exc}") from None
        return None


TRANSPORTS: dict[str, type[Transport]] = {
    cls.kind: cls for cls in (EmailTransport, WebhookTransport, SlackTransport, PagerDutyTransport)
}


# Every setting some integration keeps secret: sealed at rest (``SealedChannelConfigField``).
SECRET_SETTINGS = frozenset(name for cls in TRANSPORTS.values() for name in cls.secret_fields)


def transport_for(channel) -> Transport:
    """The integration of ``channel``, with its settings opened (the only place they are)."""
    try:
        cls = TRANSPORTS[channel.kind]
    except KeyError:
        raise TransportError(f"unknown channel kind {channel.kind!r}", permanent=True) from None
    try:
        config = unseal(channel.config, keys=SECRET_SETTINGS)
    except SecretError as exc:  # this process's keys, not the channel: not permanent
        raise TransportError(str(exc)) from None
    return cls(config, receiver=channel.name)


def masked_setting(value: Any) -> str:
    """A secret setting as pages show it: a URL's scheme and host (its path and query may
    carry a token), the last four characters of a longer key (to tell keys apart), else
    ``******``; never enough to use it."""
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.hostname}/{MASK}"
    return f"{MASK}{text[-4:]}" if len(text) >= 20 else MASK


def timed_send(transport: Transport, notice: Notice) -> tuple[int | None, float]:
    """``send`` and how long it took, in ms (also when it raises: ``exc.duration_ms``)."""
    started = time.monotonic()
    try:
        status = transport.send(notice)
    except TransportError as exc:
        exc.duration_ms = (time.monotonic() - started) * 1000  # type: ignore[attr-defined]
        raise
    return status, (time.monotonic() - started) * 1000
