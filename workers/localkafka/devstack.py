"""Start the whole local stack in the foreground; Ctrl-C stops everything it started.

    bin/up            (installs, then runs ``python -m workers.localkafka.devstack``)
    bin/up --secure   the local cluster also gets its SASL_SSL listener (SCRAM, TLS, ACLs);
                      its first start decides: ``destroy`` a plaintext one first

Order: Redis (reused when one already listens on the ``REDIS_URL`` port), the local three-node
Kafka cluster (skipped when ``KAFKA_BOOTSTRAP_SERVERS`` points at an existing cluster), database
migrations and a first admin user, then Daphne, a Celery worker and Celery beat. When any child
dies, or on SIGINT/SIGTERM, every process this command started is stopped, in reverse order.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from workers.clientsecrets import generate_key
from workers.localkafka.cluster import LocalCluster
from workers.localkafka.logrelay import LogRelay
from workers.system import LOCAL_DIR, PROJECT_ROOT, terminate, write_local_stack_env

VENV_BIN = Path(sys.executable).parent
LOGS_DIR = LOCAL_DIR / "logs"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def log(message: str) -> None:
    print(f"[up] {message}", flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {host}:{port} exited with {proc.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def redis_server_argv(port: int, data: Path) -> list[str]:
    """The command line of a project-started Redis on 127.0.0.1:``port`` keeping its files in
    ``data``: persisting, because the sentinels' ledger, acks and checkpoints live there, so a
    restart must not lose them (at most the last second with ``everysec``; nothing on a clean
    shutdown, which fsyncs the append-only file)."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed: run bin/install")
    return [
        server,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data),
        "--logfile",
        str(data / "redis.log"),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ]


class Stack:
    """The children started by this command, stopped in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.relays: dict[str, LogRelay] = {}
        self.cluster: LocalCluster | None = None
        self.shutdown = False

    def spawn(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``name``; its output goes to ``.local/logs/<name>.log``, and the lines a
        person needs to the terminal too (``logrelay``)."""
        log(f"starting {name}")
        # A session of its own, so the terminal's Ctrl-C reaches only this supervisor,
        # which then stops the children in order.
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            **kwargs,
        )
        assert proc.stdout is not None
        path = LOGS_DIR / f"{name.replace(' ', '-')}.log"
        self.relays[name] = LogRelay(name, proc.stdout, path)
        self.children.append((name, proc))
        return proc

    def exited(self, name: str, proc: subprocess.Popen) -> None:
        """Say that ``name`` exited, with the end of its log (the terminal showed only part)."""
        relay = self.relays[name]
        relay.join(5)
        log(f"{name} exited with {proc.returncode}; the end of {relay.path}:")
        for line in relay.tail():
            print(f"    {line}", flush=True)

    def start_redis(self, url: str) -> None:
        parsed = urlparse(url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
        if port_open(host, port):
            log(f"using the Redis already listening on {host}:{port}")
            return
        if host not in ("127.0.0.1", "localhost"):
            raise RuntimeError(f"REDIS_URL points at {host}:{port}, which does not answer")
        data = LOCAL_DIR / "redis"
        data.mkdir(parents=True, exist_ok=True)
        proc = self.spawn("redis", redis_server_argv(port, data))
        wait_for_port("127.0.0.1", port, 30, proc)

    def start_kafka(self, secure: bool = False) -> None:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            log(f"using the existing Kafka cluster at {os.environ['KAFKA_BOOTSTRAP_SERVERS']}")
            return
        cluster = LocalCluster("dev", secure=secure)
        already = all(node["state"] == "running" for node in cluster.status()["nodes"])
        log("starting the local three-node Kafka cluster (first start formats storage)")
        cluster.start()
        if not already:
            self.cluster = cluster
        log(f"Kafka ready at {cluster.bootstrap_servers}")
        if cluster.secure:
            log(
                f"secured listener (SASL_SSL, SCRAM-SHA-512) at {cluster.secure_bootstrap_servers}"
                f"; CA and users in {cluster.security.dir} (README: a secured cluster)"
            )

    def manage(self, *args: str) -> None:
        subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=PROJECT_ROOT, check=True)

    def stop(self) -> None:
        # One at a time, each waited for: the worker stops its sentinels while Redis (their
        # ledger and leases) is still there, so Redis goes last.
        for name, proc in reversed(self.children):
            if proc.poll() is not None:
                continue
            log(f"stopping {name}")
            if not terminate(proc, 60):
                log(f"{name} did not stop in 60s: killed it")
        if self.cluster is not None:
            log("stopping the local Kafka cluster")
            self.cluster.stop()
            self.cluster = None
        self.children.clear()


def local_defaults(host: str, port: int) -> dict[str, str]:
    """What the local stack sets unless the environment says otherwise: debug off (a 404 is a
    plain page, not Django's list of every URL; ``DJANGO_DEBUG=true`` when you want it), so a
    secret key of its own kept in ``.local/secret-key``; notifications may go to receivers on
    this machine (a local Alertmanager, a test hook); links in them point here."""
    defaults = {
        "DJANGO_DEBUG": "false",
        "ONCALL_ALLOW_PRIVATE_URLS": "true",
        "DS_BASE_URL": f"http://{host}:{port}",
    }
    if not os.environ.get("DJANGO_SECRET_KEY"):
        defaults["DJANGO_SECRET_KEY_FILE"] = _key_file("secret-key", secrets.token_urlsafe(50))
    # Client secrets (sasl.password...) are stored encrypted under this key (see README).
    if not os.environ.get("DS_SECRETS_KEY") and not os.environ.get("DS_SECRETS_KEY_FILE"):
        defaults["DS_SECRETS_KEY_FILE"] = _key_file("secrets-key", generate_key())
    return defaults


def _key_file(name: str, fresh: str) -> str:
    """``.local/<name>``, written once with ``fresh`` (mode 0600) and kept across starts."""
    key_file = LOCAL_DIR / name
    if not key_file.exists():
        LOCAL_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(fresh)
    return str(key_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/up", description="The whole local stack.")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="give the local cluster its SASL_SSL listener (SCRAM users, TLS, ACLs)",
    )
    args = parser.parse_args(argv)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    host = os.environ.get("DS_HOST", "127.0.0.1")
    port = int(os.environ.get("DS_PORT", "8000"))
    defaults = local_defaults(host, port)
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    # Commands run by hand (manage.py shell, createsuperuser, secrets) see the same settings.
    write_local_stack_env({name: os.environ[name] for name in defaults})
    stack = Stack()

    def on_signal(signum, _frame):
        stack.shutdown = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_redis(redis_url)
        stack.start_kafka(secure=args.secure)
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        stack.manage("ensure_admin")
        # One sentinel per semantic on the local cluster, so the first page shows live data.
        stack.manage("sentinels", "ensure-defaults")
        celery = str(VENV_BIN / "celery")
        stack.spawn(
            "celery worker", [celery, "-A", "workers.runtime.celery", "worker", "-l", "info"]
        )
        stack.spawn(
            "celery beat",
            [
                celery,
                "-A",
                "workers.runtime.celery",
                "beat",
                "-l",
                "info",
                "--schedule",
                str(LOCAL_DIR / "celerybeat-schedule"),
            ],
        )
        daphne = stack.spawn(
            "daphne",
            [str(VENV_BIN / "daphne"), "-b", host, "-p", str(port), "dashboard.asgi:application"],
        )
        wait_for_port(host, port, 60, daphne)
        log(f"Delivery Sentinel is up: http://{host}:{port}/  (Ctrl-C stops everything)")
        log(f"routine logs: {LOGS_DIR}/; here: sentinels starting and stopping, warnings, errors")
        while not stack.shutdown:
            for name, proc in stack.children:
                if proc.poll() is not None:
                    stack.exited(name, proc)
                    log("stopping the stack")
                    return 1
            time.sleep(0.5)
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
