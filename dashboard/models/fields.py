"""``SealedPropertiesField``: a JSON object of client properties whose secrets are never stored
in clear (``workers.clientsecrets``).

The value in memory is the value in the database: secrets as ``fernet:`` tokens or
``env:`` / ``file:`` references. So a fixture, a ``dumpdata``, the admin and a spec file hold
what the database holds, and a spec read twice is the same spec (Fernet tokens differ at every
encryption: sealing on each read would look like an edit to the supervisor). Code that builds
a client calls ``workers.clientsecrets.unseal`` on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import models

from workers.clientsecrets import seal


class SealedPropertiesField(models.JSONField):
    """A JSONField of ``key: value`` client properties; clear secrets are sealed on save.

    Raises ``workers.clientsecrets.SecretError`` on save when a clear secret is given and no
    ``DS_SECRETS_KEY`` is configured (forms check first, with a message)."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if isinstance(value, dict):
            value = seal(value)
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        # QuerySet.update() and bulk_create() skip pre_save; they come through here.
        if isinstance(value, dict):
            value = seal(value)
        return super().get_prep_value(value)


# Every field that holds client properties: (model name, field names).
SEALED_FIELDS = (
    ("Cluster", ("client_properties",)),
    ("Profile", ("producer_properties", "consumer_properties")),
)
Transform = Callable[[dict[str, Any]], tuple[dict[str, Any], int]]


def transform_rows(get_model: Callable[[str, str], Any], transform: Transform) -> int:
    """Apply ``transform`` (properties -> new properties, values changed) to every sealed
    field of every row; the number of values changed. ``get_model`` is ``apps.get_model`` in a
    migration (historical models), ``django.apps.apps.get_model`` elsewhere."""
    changed = 0
    for model_name, fields in SEALED_FIELDS:
        model = get_model("dashboard", model_name)
        for row in model.objects.all():
            updates = {}
            for name in fields:
                value, count = transform(getattr(row, name) or {})
                if count:
                    updates[name], changed = value, changed + count
            if updates:
                model.objects.filter(pk=row.pk).update(**updates)
    return changed
