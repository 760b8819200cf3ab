"""The soak's report: ``soak.json`` (everything) and ``soak.html``, a self-contained page.

The page has the judged checks, the faults with their takeover times, and for each sentinel
four plots over the same time axis, with the fault timeline drawn across them: throughput
(records processed per second, with the verdict of each second as a strip under it), lag
(pending records, and end-to-end latency p99), and the problem counters (cumulative lost,
duplicated, aborted reads). Inline SVG, no script, no external file; a long soak's seconds
are merged into at most ``MAX_POINTS`` points per line (throughput averaged, lag at its max).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from workers.engine.documents import Verdict
from workers.lab.outcome import SemanticResult

W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 110, 60, 10, 8, 18
MAX_POINTS = 450  # per line: two pixels each
VERDICT_COLOURS = {
    Verdict.HOLDING: "#2e9e4f",
    Verdict.DEGRADED: "#e0a800",
    Verdict.STALLED: "#7d7d7d",
    Verdict.VIOLATED: "#d62728",
    "": "#dddddd",
}
FAULT_COLOURS = {
    "leader-kill": "#d62728",
    "broker-pause": "#9467bd",
    "rolling-restart": "#8c564b",
    "sentinel-kill": "#e377c2",
    "host-kill": "#bcbd22",
    "worker-kill": "#ff7f0e",
    "redis-restart": "#17becf",
    "restart-all": "#1f77b4",
}
# Index of each field in a compact window (``workers.lab.soak.compact_window``).
T, VERDICT, PROCESSED, PENDING, P99, LOST, DUPLICATED, ABORTED = range(8)


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "soak.json", directory / "soak.html"
    json_path.write_text(json.dumps(report, indent=1, default=str))
    html_path.write_text(render(report))
    return json_path, html_path


def as_results(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as the scenario lab's per-sentinel results (``SemanticResult``), so a soak
    run is kept and shown like a scenario run: its counters, its checks, whether all held."""
    faults = ", ".join(f["kind"] for f in report.get("faults", []))
    out = []
    for key, doc in report.get("sentinels", {}).items():
        mine = [c for c in report.get("checks", []) if c["sentinel"] == key]
        out.append(
            SemanticResult(
                semantic=doc["semantic"],
                profile=f"{key}: {doc['profile']}" + ("" if doc["judged"] else " (reported)"),
                fault=f"soak, seed {report.get('seed')}: {faults}",
                fault_at=None,
                counters=doc["totals"],
                expected=[f"{c['name']} ({c['expected']})" for c in mine],
                matched=all(c["ok"] for c in mine),
                notes=[
                    f"{c['name']}: saw {json.dumps(c['seen'], default=str)[:200]}"
                    for c in mine
                    if not c["ok"]
                ],
            ).to_dict()
        )
    return out


def _x(t: float, t0: float, t1: float) -> float:
    return LEFT + (W - LEFT - RIGHT) * (t - t0) / max(1e-9, t1 - t0)


def _buckets(points: list[tuple[float, float]], how: str) -> list[tuple[float, float]]:
    """At most ``MAX_POINTS`` points: consecutive points merged by ``how`` (mean or max), so a
    30-minute plot stays light and a one-second spike (max) still shows."""
    if len(points) <= MAX_POINTS:
        return points
    size = -(-len(points) // MAX_POINTS)
    out = []
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        values = [v for _t, v in chunk]
        merged = max(values) if how == "max" else sum(values) / len(values)
        out.append((chunk[-1][0], merged))
    return out


def fault_bands(faults: list[dict[str, Any]], t0: float, t1: float, height: int) -> str:
    out = []
    for f in faults:
        x0 = _x(t0 + f["started"], t0, t1)
        x1 = max(x0 + 2, _x(t0 + (f["ended"] or f["started"]), t0, t1))
        colour = FAULT_COLOURS.get(f["kind"], "#999")
        out.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{height}" '
            f'fill="{colour}" fill-opacity="0.18"><title>{escape(f["kind"])} '
            f"t+{f['started']:.0f}s..{f['ended']:.0f}s</title></rect>"
        )
    return "".join(out)


def line_chart(
    title: str,
    series: list[tuple[str, str, list[tuple[float, float]]]],
    t0: float,
    t1: float,
    faults: list[dict[str, Any]],
    *,
    strip: list[tuple[float, str]] | None = None,
) -> str:
    """One plot: ``series`` of ``(label, colour, [(t, value)])`` over ``t0..t1``."""
    plot_h = H - TOP - BOTTOM
    top = max([v for _l, _c, pts in series for _t, v in pts] + [1.0])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 14}" '
        f'viewBox="0 0 {W} {H + 14}" font-family="sans-serif" font-size="10">',
        fault_bands(faults, t0, t1, plot_h),
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" '
        f'stroke="#999"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top:.4g}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
        f'<text x="{LEFT + 4}" y="{TOP + 10}" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, colour, pts) in enumerate(series):
        if pts:
            path = " ".join(
                f"{_x(t, t0, t1):.1f},{TOP + plot_h * (1 - v / top):.1f}" for t, v in pts
            )
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{path}"/>'
            )
        parts.append(
            f'<text x="{W - RIGHT - 150 * (len(series) - i)}" y="{TOP + 10}" '
            f'fill="{colour}">{escape(label)}</text>'
        )
    if strip:
        y = TOP + plot_h + 2
        # One rectangle per run of equal verdicts.
        strip = [p for i, p in enumerate(strip) if i == 0 or p[1] != strip[i - 1][1]]
        for (t, verdict), nxt in zip(strip, [*strip[1:], (t1, "")], strict=True):
            x0, x1 = _x(t, t0, t1), _x(nxt[0], t0, t1)
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(0.5, x1 - x0):.1f}" '
                f'height="6" fill="{VERDICT_COLOURS.get(verdict, "#ddd")}"/>'
            )
    for minute in range(0, int((t1 - t0) // 60) + 1, max(1, int((t1 - t0) // 600))):
        x = _x(t0 + minute * 60, t0, t1)
        parts.append(f'<text x="{x:.1f}" y="{H + 12}" text-anchor="middle">{minute}m</text>')
    parts.append("</svg>")
    return "".join(parts)


def sentinel_plots(key: str, doc: dict[str, Any], report: dict[str, Any]) -> str:
    t0, t1 = report["started_at"], report["finished_at"]
    faults = report.get("faults", [])
    ws = doc.get("windows", [])
    rate = _buckets([(w[T], float(w[PROCESSED])) for w in ws], "mean")
    pending = _buckets([(w[T], float(w[PENDING])) for w in ws], "max")
    p99 = _buckets([(w[T], float(w[P99])) for w in ws if w[P99] is not None], "max")
    cum: dict[int, list[tuple[float, float]]] = {LOST: [], DUPLICATED: [], ABORTED: []}
    totals = dict.fromkeys(cum, 0.0)
    for w in ws:
        for i in cum:
            totals[i] += w[i] or 0
            cum[i].append((w[T], totals[i]))
    cum = {i: _buckets(pts, "max") for i, pts in cum.items()}
    judged = "judged" if doc.get("judged") else "reported, not judged"
    head = (
        f'<h3 id="{escape(key)}">{escape(key)}: {escape(doc["profile"])} '
        f"({doc['partitions']} partitions; {judged})</h3>"
    )
    strip = [(w[T], w[VERDICT]) for w in ws]
    counters = [
        ("lost", "#d62728", cum[LOST]),
        ("duplicated", "#ff7f0e", cum[DUPLICATED]),
        ("aborted reads", "#7f7f7f", cum[ABORTED]),
    ]
    return head + "".join(
        [
            line_chart(
                "throughput, processed/s; verdict strip below",
                [("processed/s", "#1f77b4", rate)],
                t0,
                t1,
                faults,
                strip=strip,
            ),
            line_chart("lag: pending records", [("pending", "#8c564b", pending)], t0, t1, faults),
            line_chart("end-to-end latency p99, ms", [("e2e p99", "#9467bd", p99)], t0, t1, faults),
            line_chart("counters (cumulative over the soak)", counters, t0, t1, faults),
        ]
    )


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def render(report: dict[str, Any]) -> str:
    passed = report.get("passed")
    checks = report.get("checks", [])
    failed = [c for c in checks if not c["ok"]]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Soak report</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:960px}"
        "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        ".ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}</style></head><body>",
        f"<h1>Soak: <span class='{'ok' if passed else 'bad'}'>"
        f"{'all judged checks pass' if passed else 'FAILED'}</span></h1>",
        f"<p>seed {report.get('seed')}, {report.get('minutes')} minutes, faults "
        f"{escape(', '.join(report.get('kinds', [])))}; {len(checks)} checks, "
        f"{len(failed)} failed.</p>",
    ]
    if "started_at" not in report:
        parts.append("<p class='bad'>The soak did not complete: see the failed checks.</p>")
    if failed:
        parts.append(
            "<h2>Failed checks</h2>"
            + _table(
                [
                    [
                        c["name"],
                        c["sentinel"],
                        json.dumps(c["seen"], default=str)[:300],
                        c["expected"],
                    ]
                    for c in failed
                ],
                ["check", "of", "seen", "expected"],
            )
        )
    legend = " ".join(
        f"<span style='background:{c};opacity:.5'>&nbsp;{escape(k)}&nbsp;</span>"
        for k, c in FAULT_COLOURS.items()
    )
    parts.append(
        f"<h2>Faults</h2><p>{legend}</p>"
        + _table(
            [
                [
                    f"t+{f['started']:.0f}s",
                    f["kind"],
                    json.dumps(f["detail"], default=str)[:160],
                    ", ".join(f"{t['sentinel']} {t['seconds']}s" for t in f["takeovers"]),
                ]
                for f in report.get("faults", [])
            ],
            ["at", "fault", "detail", "back to progress"],
        )
    )
    parts.append(
        "<h2>Sentinels</h2>"
        + _table(
            [
                [
                    k,
                    d["profile"],
                    "yes" if d["judged"] else "no",
                    *(
                        d["totals"].get(c, 0)
                        for c in (
                            "acked",
                            "processed",
                            "lost",
                            "duplicated",
                            "aborted_read",
                            "pending",
                        )
                    ),
                    ", ".join(d["comparison"]["differ"]) or "equal",
                ]
                for k, d in report.get("sentinels", {}).items()
            ],
            [
                "sentinel",
                "profile",
                "judged",
                "acked",
                "processed",
                "lost",
                "duplicated",
                "aborted reads",
                "pending",
                "vs ground truth",
            ],
        )
    )
    for key, doc in report.get("sentinels", {}).items():
        parts.append(sentinel_plots(key, doc, report))
    parts.append(
        "<h2>All checks</h2>"
        + _table(
            [
                [
                    "pass" if c["ok"] else "FAIL",
                    c["name"],
                    c["sentinel"],
                    json.dumps(c["seen"], default=str)[:200],
                ]
                for c in checks
            ],
            ["", "check", "of", "seen"],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)
