"""Pages: login, logout, home, health check."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from tests.conftest import ALICE_PASSWORD

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_renders_the_login_page(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">Username</label>' in html
    assert 'autocomplete="current-password"' in html
    assert "csrfmiddlewaretoken" in html


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_it_logs_in_with_a_password_and_shows_home(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": ALICE_PASSWORD}, follow=True
    )
    assert response.redirect_chain == [("/", 302)]
    html = response.content.decode()
    assert "<h1>Delivery Sentinel</h1>" in html
    assert "Signed in as <strong>alice</strong>" in html


def test_it_rejects_a_wrong_password(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_logs_out_by_post_only(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get("/").status_code == 302


def test_it_shows_the_admin_link_to_staff_only(client, alice, admin_user):
    client.force_login(alice)
    assert 'href="/admin/"' not in client.get("/").content.decode()
    client.force_login(admin_user)
    assert 'href="/admin/"' in client.get("/").content.decode()
    assert client.get("/admin/").status_code == 200


def test_it_reports_healthy_database_and_redis(client, redis_url):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_reports_503_when_redis_is_down(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "redis": "error"}


def test_it_answers_an_unknown_address_with_a_plain_page_and_a_way_back(client, alice):
    client.force_login(alice)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'href="/">Back to the overview' in html
    assert "URLconf" not in html and "sentinel-detail" not in html  # no list of every URL


def test_the_local_stack_runs_with_debug_off_and_a_secret_key_of_its_own(tmp_path, monkeypatch):
    from workers.localkafka import devstack

    monkeypatch.setattr(devstack, "LOCAL_DIR", tmp_path)
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    defaults = devstack.local_defaults("127.0.0.1", 8000)
    assert defaults["DJANGO_DEBUG"] == "false"
    key_file = tmp_path / "secret-key"
    assert defaults["DJANGO_SECRET_KEY_FILE"] == str(key_file)
    key = key_file.read_text()
    assert len(key) >= 50 and key_file.stat().st_mode & 0o077 == 0
    assert devstack.local_defaults("127.0.0.1", 8000)["DJANGO_SECRET_KEY_FILE"] == str(key_file)
    assert key_file.read_text() == key  # kept across starts, so sessions survive a restart
