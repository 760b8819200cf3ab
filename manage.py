#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    # Beside a running bin/up, a command by hand gets the keys the stack uses (its key files);
    # a deployment's own configuration always wins (workers.system.local_stack_env).
    from workers.system import local_stack_env

    for name, value in local_stack_env().items():
        os.environ.setdefault(name, value)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
