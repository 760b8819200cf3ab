"""Validating client properties with librdkafka itself.

Constructing the real client gives an unknown or invalid property librdkafka's own message;
the rules that need no client (Java-only and reserved keys, settings that contradict the
commit strategy) are the engine's (``workers.engine.profiles``).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from workers.engine.profiles import Profile, semantic_errors, static_errors


def client_error(kind: str, props: dict[str, Any]) -> str | None:
    """librdkafka's own message for ``props``, or ``None`` when the client can be built."""
    conf = {str(k): v for k, v in props.items()}
    # Construction only: no broker is contacted, so keep librdkafka quiet about that.
    conf.setdefault("log_level", 0)
    try:
        if kind == "producer":
            client = Producer(conf)
            client.flush(0)
        else:
            conf.setdefault("group.id", "delivery-sentinel-validation")
            client = Consumer(conf)
            client.close()
    except (KafkaException, ValueError, TypeError) as exc:
        error = exc.args[0] if exc.args else exc
        return getattr(error, "str", lambda: str(error))()
    return None


def validate_properties(kind: str, props: dict[str, Any]) -> dict[str, str]:
    """Errors by property name (``"__all__"`` for a whole-set error); empty when valid.

    ``kind`` is ``"producer"`` or ``"consumer"``.
    """
    if kind not in ("producer", "consumer"):
        raise ValueError(f"kind must be 'producer' or 'consumer', not {kind!r}")
    errors = static_errors(props)
    if errors:
        return errors
    message = client_error(kind, props)
    if message:
        culprit = next((k for k in props if f"`{k}`" in message or f'"{k}"' in message), None)
        if culprit is None:
            culprit = next((k for k in props if k in message), "__all__")
        errors[culprit] = message
    return errors


def validate_profile(profile: Profile) -> dict[str, str]:
    """Errors keyed ``producer.<prop>`` / ``consumer.<prop>`` / ``__all__``; empty when valid."""
    errors = {
        f"producer.{k}": v for k, v in validate_properties("producer", profile.producer).items()
    }
    errors.update(
        {f"consumer.{k}": v for k, v in validate_properties("consumer", profile.consumer).items()}
    )
    errors.update(semantic_errors(profile))
    return errors
