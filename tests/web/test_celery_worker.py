"""A real Celery worker process round trip through the Redis broker and result backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from workers.runtime.celery import app
from workers.runtime.tasks import ping

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")

pytestmark = pytest.mark.slow


def wait_until_ready(proc: subprocess.Popen[bytes], node: str, log: Path, timeout: float) -> None:
    """Ping the worker (control ping) until it answers, it dies or ``timeout`` passes."""

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited with {proc.returncode}:\n{log.read_text()}")
        return bool(app.control.ping(destination=[node], timeout=0.5))

    wait_until(answers, timeout, f"celery worker {node} to answer a ping", 0, log.read_text)


def test_it_runs_a_task_on_a_real_worker(redis_url, tmp_path):
    suffix = uuid.uuid4().hex[:12]
    queue, node = f"test-{suffix}", f"test-{suffix}@localhost"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "SENTINELS_ENABLED": "false",  # this worker only answers pings
    }
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "workers.runtime.celery",
                "worker",
                "--pool=solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                queue,
                "-n",
                node,
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(proc, node, log, timeout=60)
        result = ping.apply_async(queue=queue)
        assert result.get(timeout=30) == "pong"
        assert result.successful()
    finally:
        proc.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "workers.runtime.tasks.ping" in log.read_text()
