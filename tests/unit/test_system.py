"""The one way the project stops its processes: SIGTERM, wait, SIGKILL."""

from __future__ import annotations

import subprocess
import sys

from workers.system import terminate, terminate_all

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
STOPS_ON_SIGTERM = "import time; print(1, flush=True); time.sleep(60)"


def start(code: str, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, **kwargs)
    proc.stdout.readline()  # its signal handlers are in place
    return proc


def test_it_stops_a_process_that_obeys_sigterm_without_sigkill():
    proc = start(STOPS_ON_SIGTERM)
    assert terminate(proc, 10) is True
    assert proc.returncode == -15


def test_it_sigkills_what_ignores_sigterm_once_the_timeout_is_over():
    proc = start(IGNORES_SIGTERM)
    assert terminate(proc, 0.3) is False
    assert proc.returncode == -9


def test_it_stops_several_at_once_and_a_whole_process_group():
    obeying = start(STOPS_ON_SIGTERM, start_new_session=True)
    ignoring = start(IGNORES_SIGTERM, start_new_session=True)
    assert terminate_all([obeying, ignoring], 0.3, group=True) is False
    assert (obeying.returncode, ignoring.returncode) == (-15, -9)
    assert terminate(obeying, 1) is True  # already stopped
