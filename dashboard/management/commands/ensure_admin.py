"""Create the first superuser on a fresh install; do nothing once any user exists.

Username from ``DS_ADMIN_USER`` (default ``admin``), password from ``DS_ADMIN_PASSWORD`` or
``DS_ADMIN_PASSWORD_FILE``, else a random one. A generated password is printed once, to stdout,
when the user is created — the only place the project ever outputs a password. A password the
operator supplied is never printed (they already have it; stdout often ends up in logs).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from workers.engine.env import EnvError, envsecret, envstr


class Command(BaseCommand):
    help = "Create a superuser if the database has no users yet (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            username = envstr("DS_ADMIN_USER", "admin") or "admin"
            supplied = envsecret("DS_ADMIN_PASSWORD", None)
        except EnvError as exc:
            raise CommandError(str(exc)) from None
        password = supplied or secrets.token_urlsafe(18)

        user_model = get_user_model()
        try:
            with transaction.atomic():
                if user_model.objects.exists():
                    self.stdout.write("admin user exists")
                    return
                user_model.objects.create_superuser(username=username, email="", password=password)
        except IntegrityError:  # another ensure_admin won the race
            self.stdout.write("admin user exists")
            return

        self.stdout.write(f"created admin user: {username}")
        if supplied:
            self.stdout.write("password: from DS_ADMIN_PASSWORD / DS_ADMIN_PASSWORD_FILE")
        else:
            self.stdout.write(f"password: {password}")
