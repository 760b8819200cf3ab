"""Numbers and times are written once: dashboard/formatting.py on the server and its twin
DS.format (dashboard/static/dashboard/format.js) in the browser give the same text for the
same cases (tests/support/format_cases.json): no float noise, latencies in seconds from 10 s,
every clock time with its zone."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from dashboard import formatting
from workers.system import PROJECT_ROOT

CASES_FILE = PROJECT_ROOT / "tests" / "support" / "format_cases.json"
FORMAT_JS = PROJECT_ROOT / "dashboard" / "static" / "dashboard" / "format.js"
DATA = json.loads(CASES_FILE.read_text())
JS_NAMES = {"latency_ms": "latencyMs"}


def _args(args: list) -> list:
    return [DATA["now"] if a == "NOW" else a for a in args]


@pytest.mark.parametrize(("name", "args", "expected"), DATA["cases"])
def test_it_writes_each_case_as_expected_in_python(name, args, expected) -> None:
    assert getattr(formatting, name)(*_args(args)) == expected


def test_it_writes_every_case_alike_in_the_browser_twin() -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no node to run format.js")
    script = (
        f"const f = require({json.dumps(str(FORMAT_JS))});"
        f"const data = require({json.dumps(str(CASES_FILE))});"
        f"const names = {json.dumps(JS_NAMES)};"
        "const out = data.cases.map(([n, a]) => f[names[n] || n]("
        "...a.map((x) => (x === 'NOW' ? data.now : x))));"
        "process.stdout.write(JSON.stringify(out));"
    )
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    got = json.loads(result.stdout)
    want = [expected for _n, _a, expected in DATA["cases"]]
    mismatched = [
        (c[0], c[1], g) for c, g, w in zip(DATA["cases"], got, want, strict=True) if g != w
    ]
    assert got == want, mismatched


def test_no_page_script_formats_a_number_by_itself() -> None:
    """Only format.js turns a measured number into text (toFixed elsewhere is how float
    noise and "93578.9 ms" reached the pages)."""
    static = PROJECT_ROOT / "dashboard" / "static" / "dashboard"
    offenders = [
        p.name
        for p in static.glob("*.js")
        if p.name != "format.js" and ".toFixed(" in p.read_text()
    ]
    assert offenders == []
