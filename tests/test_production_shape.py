"""The web command of the Dockerfile and docker-compose.yml: gunicorn, DEBUG off, our own static files."""

from pathlib import Path

import pytest

from tests.support import Browserless, gunicorn


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_pages_and_vendored_htmx_with_debug_off(tmp_path: Path):
    with gunicorn(tmp_path / "gunicorn.log", DEBUG="0") as base:
        client = Browserless(base)
        status, _, page = client.request("/accounts/login/")
        assert status == 200
        script = next(part.split('"')[0] for part in page.split('src="')[1:] if "htmx" in part)
        assert script.startswith("/static/django_htmx/htmx-2")
        status, headers, body = client.request(script)
        assert status == 200 and "htmx" in body and headers["Content-Type"].startswith("text/javascript")
        status, _, body = client.request("/no/such/page/")
        assert status == 404 and "Traceback" not in body
