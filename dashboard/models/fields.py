"""``SealedPropertiesField``: a JSON object of client properties whose secrets are never stored
in clear (``workers.clientsecrets``).

The value in memory is the value in the database: secrets as ``fernet:`` tokens or
``env:`` / ``file:`` references. So a fixture, a ``dumpdata``, the admin and a spec file hold
what the database holds, and a spec read twice is the same spec (Fernet tokens differ at every
encryption: sealing on each read would look like an edit to the supervisor). Code that builds
a client calls ``workers.clientsecrets.unseal`` on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from django.db import migrations, models

from dashboard.oncall.transports import SECRET_SETTINGS
from workers.clientsecrets import seal, seal_counted, unseal_tokens


class SealedPropertiesField(models.JSONField):
    """A JSONField of ``key: value`` client properties; clear secrets are sealed on save.

    Raises ``workers.clientsecrets.SecretError`` on save when a clear secret is given and no
    ``DS_SECRETS_KEY`` is configured (forms check first, with a message)."""

    def secret_keys(self) -> Collection[str] | None:
        """The keys sealed; None: the one rule of client properties (``is_secret_key``)."""
        return None

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if isinstance(value, dict):
            value = seal(value, keys=self.secret_keys())
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        # QuerySet.update() and bulk_create() skip pre_save; they come through here.
        if isinstance(value, dict):
            value = seal(value, keys=self.secret_keys())
        return super().get_prep_value(value)


class SealedChannelConfigField(SealedPropertiesField):
    """An on-call channel's settings: the ones any integration calls secret (a webhook's URL,
    a PagerDuty routing key: ``dashboard.oncall.transports.SECRET_SETTINGS``) are sealed on save.

    One set for every kind, since a QuerySet.update() does not say the row's kind: a setting
    secret for one integration is sealed for all (a PagerDuty endpoint ``url`` too)."""

    def secret_keys(self) -> Collection[str]:
        return SECRET_SETTINGS


# Every field whose secrets are sealed: (model name, field names, secret keys: None for
# client properties, ``is_secret_key``).
SealedFields = tuple[tuple[str, tuple[str, ...], Collection[str] | None], ...]
CLIENT_PROPERTIES: SealedFields = (
    ("Cluster", ("client_properties",), None),
    ("Profile", ("producer_properties", "consumer_properties"), None),
)
CHANNEL_SETTINGS: SealedFields = (("Channel", ("config",), SECRET_SETTINGS),)
Transform = Callable[[dict[str, Any], Collection[str] | None], tuple[dict[str, Any], int]]


def transform_rows(
    get_model: Callable[[str, str], Any], transform: Transform, fields: SealedFields
) -> int:
    """Apply ``transform`` (properties, secret keys -> new properties, values changed) to the
    sealed ``fields`` of every row; the number of values changed. ``get_model`` is
    ``apps.get_model`` in a migration (historical models), ``django.apps.apps.get_model``
    elsewhere."""
    changed = 0
    for model_name, names, keys in fields:
        model = get_model("dashboard", model_name)
        for row in model.objects.all():
            updates = {}
            for name in names:
                value, count = transform(getattr(row, name) or {}, keys)
                if count:
                    updates[name], changed = value, changed + count
            if updates:
                model.objects.filter(pk=row.pk).update(**updates)
    return changed


def sealing(fields: SealedFields) -> migrations.RunPython:
    """A migration's operation that seals the clear secrets of ``fields`` in existing rows
    (``DS_SECRETS_KEY`` must be set when there are any) and, reversed, decrypts them again
    (references stay references). It runs on the historical models before the fields become
    sealed ones, and reversed after they became plain JSON fields again."""

    def seal_existing(apps: Any, schema_editor: Any) -> None:
        transform_rows(apps.get_model, seal_counted, fields)

    def open_existing(apps: Any, schema_editor: Any) -> None:
        transform_rows(apps.get_model, unseal_tokens, fields)

    return migrations.RunPython(seal_existing, open_existing)


SEALED_FIELDS = CLIENT_PROPERTIES + CHANNEL_SETTINGS
