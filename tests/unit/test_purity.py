"""The unit tests stay pure: none of their modules pulls in Django, the dashboard or Redis.

pytest-django has set Django up in this process already, so the check imports every unit test
module in a fresh interpreter and looks at what that loaded. The Kafka client library itself is
allowed (librdkafka validates a config and builds error values without a broker); a unit test
that needs a broker finds no address (tests/unit/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FORBIDDEN = ("django", "dashboard", "channels", "celery", "daphne", "redis")

PROBE = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    loaded[name] = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps(loaded))
"""


def test_it_imports_no_django_dashboard_or_redis_from_a_unit_test_module() -> None:
    modules = [f"tests.unit.{p.stem}" for p in sorted(HERE.glob("test_*.py"))]
    assert "tests.unit.test_purity" in modules
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    impure = {
        module: sorted(set(names) & set(FORBIDDEN))
        for module, names in loaded.items()
        if set(names) & set(FORBIDDEN)
    }
    assert impure == {}, f"unit test modules that import {FORBIDDEN}: move them to tests/web"
