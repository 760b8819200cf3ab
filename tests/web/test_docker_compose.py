"""The shipped compose file, checked as far as a machine without a Docker engine allows:
Docker Compose's own validation (``docker compose config``, or Debian's ``docker-compose``,
which bin/install --dev installs), and what a production stack needs of it (docs/deploy.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
REQUIRED = re.compile(r"\$\{([A-Z_]+):\?")
ANY_VAR = re.compile(r"(?<!\$)\$\{([A-Z_]+)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def example_env() -> dict[str, str]:
    """``docker/.env.example``'s variables and their example values ("" for a secret)."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "no Docker Compose: bin/install --dev installs Debian's docker-compose"
    return [legacy]


def test_docker_compose_accepts_the_file_with_the_example_environment_filled_in():
    env = {k: v or f"example-{k.lower()}" for k, v in example_env().items()}
    done = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) >= {"postgres", "redis", "migrate", "web", "worker", "beat"}


def test_docker_compose_refuses_to_start_without_the_secrets():
    done = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert done.returncode != 0
    assert "set " in done.stderr  # the ${VAR:?set VAR} message names what is missing


def test_the_example_environment_names_every_variable_the_file_reads():
    text = COMPOSE.read_text()
    example = example_env()
    assert set(REQUIRED.findall(text)) <= set(example), "a required variable is not in .env.example"
    assert set(example) <= set(ANY_VAR.findall(text)), ".env.example names a variable nothing reads"
    secrets = {"DJANGO_SECRET_KEY", "DS_SECRETS_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    assert secrets <= set(REQUIRED.findall(text)), "a secret has a default"
    assert all(not example[name] for name in secrets), "the example ships a secret value"


def test_the_app_runs_on_postgresql_never_a_shared_sqlite_file(compose):
    for name in ("migrate", "web", "worker", "beat"):
        url = compose["services"][name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgres://") and "@postgres:" in url, (name, url)
    assert "sqlite" not in COMPOSE.read_text()


def test_services_start_in_order_once_what_they_need_is_healthy(compose):
    services = compose["services"]
    for name, service in services.items():
        for needed, how in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on a service the file lacks: {needed}"
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[needed], f"{needed} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[needed].get("restart") == "no", f"{needed} is not one-shot"
    for name in ("web", "worker", "beat"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
    assert "migrate" in services["migrate"]["command"]


def test_workers_scale_and_beat_and_migrations_run_once(compose):
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=3 works
    assert "worker" in worker["command"] and "beat" not in worker["command"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "beat" in services["beat"]["command"]
    assert "daphne" in services["web"]["command"]
    assert "--appendonly yes" in " ".join(services["redis"]["command"])  # README: what Redis keeps


def test_every_image_is_pinned_and_every_volume_declared(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), (name, image)
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).exists() or source.endswith("token"), (name, source)
            else:
                assert source in declared, f"{name} mounts an undeclared volume {source}"


def test_the_image_copies_only_what_exists():
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
