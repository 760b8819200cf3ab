"""Client secrets and on-call channel secrets at rest (``workers.clientsecrets``):

    manage.py secrets newkey    print a new Fernet key for DS_SECRETS_KEY
    manage.py secrets rotate    re-encrypt every stored secret under the first key
    manage.py secrets check     open every stored secret with the configured keys

Rotating a key: set ``DS_SECRETS_KEY=<new key>,<old key>`` (the first key seals, every key
opens) for every process, run ``manage.py secrets rotate``, then set ``DS_SECRETS_KEY=<new
key>`` alone. The command never prints a secret.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard.models.fields import SEALED_FIELDS, transform_rows
from workers.clientsecrets import SecretError, generate_key, keyring, rotate, unseal_tokens
from workers.engine.env import EnvError


class Command(BaseCommand):
    help = "Client secrets at rest: newkey, rotate, check."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=("newkey", "rotate", "check"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "newkey":
            self.stdout.write(generate_key())
            return
        try:
            ring = keyring()
            if ring is None:
                raise CommandError("DS_SECRETS_KEY (or DS_SECRETS_KEY_FILE) is not set")
            with transaction.atomic():
                if options["action"] == "rotate":
                    count = transform_rows(
                        apps.get_model, lambda p, keys: rotate(p, ring, keys), SEALED_FIELDS
                    )
                    self.stdout.write(f"{count} secret(s) re-encrypted under the first key")
                else:
                    count = sum(unseal_tokens(p)[1] for p in _all_properties())
                    self.stdout.write(f"{count} secret(s) open with the configured keys")
        except (SecretError, EnvError) as exc:
            raise CommandError(str(exc)) from None


def _all_properties() -> list[dict[str, Any]]:
    out = []
    for model_name, fields, _keys in SEALED_FIELDS:
        for row in apps.get_model("dashboard", model_name).objects.all():
            out += [getattr(row, name) or {} for name in fields]
    return out
