"""The production settings from the environment, the headers every answer carries, password rules."""

import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from django.test import Client

from batches.tokens import create_token
from tests.support import BASE_DIR, web_server

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_COOKIES": "1",
}


def test_check_deploy_reports_nothing_with_the_documented_production_environment():
    env = {**os.environ, "SECRET_KEY": secrets.token_urlsafe(50), **PRODUCTION_ENV}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the Playwright tests for their own process
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


@pytest.mark.django_db(transaction=True)
def test_behind_a_tls_proxy_the_production_environment_sends_hsts_and_secure_cookies(tmp_path: Path):
    env = {**PRODUCTION_ENV, "SECRET_KEY": secrets.token_urlsafe(50), "SECURE_PROXY_SSL_HEADER": "1"}
    with web_server(tmp_path / "web.log", workers=1, threads=2, **env) as base:
        plain_status, plain = fetch(f"{base}/accounts/login/")
        status, headers = fetch(f"{base}/accounts/login/", {"X-Forwarded-Proto": "https"})

    assert plain_status == 301 and plain["Location"].startswith("https://")
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    cookies = headers.get_all("Set-Cookie")
    assert cookies and all("; Secure" in cookie for cookie in cookies)


def script_sources(policy: str) -> str:
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if " " in part.strip())
    return directives.get("script-src", directives["default-src"])


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+=", re.IGNORECASE)


@pytest.mark.django_db
def test_every_page_carries_a_csp_without_inline_script_or_eval(make_user, make_event):
    event = make_event(tickets=3, name="Gala")
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    pages = ["/", f"/events/{event.pk}/", "/admin/", "/admin/batches/batch/", "/api/docs", "/api/batches"]

    for url in [*pages, "/accounts/login/"]:
        response = (client if url != "/accounts/login/" else Client()).get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, url
        assert "'unsafe-inline'" not in script_sources(policy) and "'unsafe-eval'" not in policy, url
        if response["Content-Type"].startswith("text/html"):
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html) and not EVENT_HANDLER.search(html), url


@pytest.mark.django_db
def test_signed_in_pages_and_api_answers_are_private_and_api_answers_vary_by_authorization(make_user, make_event):
    alice = make_user("alice")
    event = make_event(tickets=3, name="Gala")
    browser = Client()
    browser.force_login(alice)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {create_token(alice, 'tests')[1]}")

    for response in [browser.get("/"), browser.get(f"/events/{event.pk}/"), api.get("/api/batches")]:
        assert response.status_code == 200
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= cache_control

    for response in [api.get("/api/batches"), Client().get("/api/batches")]:
        assert "authorization" in response["Vary"].lower()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "complaint"),
    [("qwertyuiop", "This password is too common."), ("8204619375312", "This password is entirely numeric.")],
)
def test_a_common_or_numeric_password_is_refused(make_user, password, complaint):
    client = Client()
    client.force_login(make_user("alice"))

    response = client.post(
        "/accounts/password_change/",
        {"old_password": "pw-alice", "new_password1": password, "new_password2": password},
    )

    assert response.status_code == 200 and complaint in response.content.decode()
