"""bin/up's terminal: what a person needs, with routine chatter in the log files."""

from __future__ import annotations

import io

from workers.localkafka.logrelay import LineFilter, LogRelay

CHATTER = [
    "2026-12-06 11:18:04,124 INFO celery.beat 6566: Scheduler: Sending due task evaluate-alerts (dashboard.tasks.evaluate_alerts)\n",
    "2026-12-06 11:18:04,140 INFO celery.worker.strategy 6565: Task dashboard.tasks.evaluate_alerts[ad0f] received\n",
    "2026-12-06 11:18:04,209 INFO celery.app.trace 6854: Task dashboard.tasks.evaluate_alerts[ad0f] succeeded in 0.06s: 0\n",
    "%4|1796555747.144|GETPID|rdkafka#producer-16| [thrd:main]: Failed to acquire idempotence PID: Coordinator load in progress: retrying\n",
    " -------------- celery@vm v5.7.0\n",
]
NEEDED = [
    "2026-12-06 11:15:43,219 INFO workers.runtime.supervisor 6565: sentinel at-least-once started in the shared host 6868\n",
    "2026-12-06 11:15:39,290 INFO daphne.cli 6568: Starting server at tcp:port=8000:interface=127.0.0.1\n",
    "2026-12-06 11:20:01,000 WARNING workers.roles.producer: sentinel exactly-once: broker unreachable\n",
    "%3|1796555747.144|FAIL|rdkafka#producer-16| [thrd:127.0.0.1:9092/1]: Connect to ipv4#127.0.0.1:9092 failed\n",
]


def test_routine_chatter_stays_out_of_the_terminal_and_what_a_person_needs_shows():
    lines = LineFilter()
    assert [line for line in CHATTER if lines.wants(line)] == []
    assert [line for line in NEEDED if lines.wants(line)] == NEEDED


def test_a_traceback_goes_where_its_record_went():
    lines = LineFilter()
    error = [
        "2026-12-06 11:20:01,000 ERROR celery.app.trace 6854: Task dashboard.tasks.lint_clusters raised\n",
        "Traceback (most recent call last):\n",
        '  File "x.py", line 1, in <module>\n',
        "RuntimeError: boom\n",
    ]
    assert all(lines.wants(line) for line in error)
    assert not lines.wants(CHATTER[2])
    assert not lines.wants("    continuation of a routine record\n")


def test_the_relay_writes_every_line_to_the_file_and_the_wanted_ones_to_the_terminal(tmp_path):
    terminal = io.StringIO()
    stream = io.StringIO("".join(CHATTER + NEEDED))
    relay = LogRelay("celery worker", stream, tmp_path / "logs" / "worker.log", terminal)
    relay.join(10)
    assert (tmp_path / "logs" / "worker.log").read_text() == "".join(CHATTER + NEEDED)
    assert terminal.getvalue() == "".join(f"[celery worker] {line}" for line in NEEDED)
    assert relay.tail(2) == [line.rstrip("\n") for line in NEEDED[-2:]]


def test_a_warning_repeated_while_a_client_retries_is_said_once_then_counted(tmp_path):
    retry = "{} WARNING workers.roles.loop: verifier exactly-once: UNKNOWN_TOPIC_OR_PART\n"
    lines = [retry.format(f"2026-12-06 11:23:40,{ms:03d}") for ms in range(5)]
    terminal = io.StringIO()
    stream = io.StringIO("".join(lines + NEEDED[:1]))
    LogRelay("worker", stream, tmp_path / "w.log", terminal).join(10)
    assert terminal.getvalue().splitlines() == [
        f"[worker] {lines[0].rstrip()}",
        "[worker] (the line before: 4 more times)",
        f"[worker] {NEEDED[0].rstrip()}",
    ]
    assert (tmp_path / "w.log").read_text().count("UNKNOWN_TOPIC_OR_PART") == 5
