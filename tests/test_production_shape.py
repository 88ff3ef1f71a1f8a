"""The web command of the Dockerfile and docker-compose.yml: gunicorn, DEBUG off, our own static files."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BASE_DIR, Browserless, free_port, subprocess_env, wait_until


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_pages_and_vendored_htmx_with_debug_off(tmp_path: Path):
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "site_config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=BASE_DIR,
        env=subprocess_env(DEBUG="0"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = Browserless(f"http://127.0.0.1:{port}")
    try:

        def login_page() -> tuple[int, dict, str] | None:
            try:
                return client.request("/accounts/login/")
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                return None

        status, _, page = wait_until(login_page, timeout=60, what="gunicorn to answer")
        assert status == 200
        script = next(part.split('"')[0] for part in page.split('src="')[1:] if "htmx" in part)
        assert script.startswith("/static/django_htmx/htmx-2")
        status, headers, body = client.request(script)
        assert status == 200 and "htmx" in body and headers["Content-Type"].startswith("text/javascript")
        status, _, body = client.request("/no/such/page/")
        assert status == 404 and "Traceback" not in body
    finally:
        server.terminate()
        server.wait(timeout=30)
