"""The web command of the Dockerfile and docker-compose.yml (granian), as production runs it."""

import json
import socket
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.support import (
    BASE_DIR,
    WEB_COMMAND,
    Browserless,
    free_port,
    gunicorn,
    serving,
    wait_until,
    web_server,
    web_server_setup,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_tests_run_the_web_command_of_the_dockerfile_and_compose():
    dockerfile_cmd = next(line for line in (BASE_DIR / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    compose_command = compose["services"]["web"]["command"][-1]

    ours = ["python", *WEB_COMMAND[1:]]
    assert WEB_COMMAND[0] == sys.executable
    assert json.loads(dockerfile_cmd.removeprefix("CMD")) == ours
    assert compose_command.endswith("exec " + " ".join(ours))


def test_serves_pages_and_vendored_htmx_with_debug_off_and_logs_each_request(tmp_path: Path):
    log = tmp_path / "web.log"
    with web_server(log, DEBUG="0") as base:
        client = Browserless(base)
        status, _, page = client.request("/accounts/login/")
        assert status == 200
        script = next(part.split('"')[0] for part in page.split('src="')[1:] if "htmx" in part)
        assert script.startswith("/static/django_htmx/htmx-2")
        status, headers, body = client.request(script)
        assert status == 200 and "htmx" in body and headers["Content-Type"].startswith("text/javascript")
        status, _, body = client.request("/no/such/page/")
        assert status == 404 and "Traceback" not in body

        def logged() -> bool:
            text = log.read_text()
            return all(
                f'"GET {path} HTTP/1.1" {code}' in text for path, code in [(script, 200), ("/no/such/page/", 404)]
            )

        wait_until(logged, timeout=10, what="an access log line for each request")


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read().decode()


def test_sigterm_lets_the_request_in_flight_finish_and_takes_no_new_one(tmp_path: Path):
    port = free_port()
    command, env = web_server_setup(
        port, DEBUG="0", DJANGO_SETTINGS_MODULE="tests.held_request_site", HELD_REQUEST_DIR=str(tmp_path)
    )
    with serving(command, env, port, tmp_path / "web.log") as server, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(get, f"http://127.0.0.1:{port}/held/")
        wait_until((tmp_path / "entered").exists, timeout=30, what="the request to reach its view")

        server.terminate()  # what `docker stop` and a deploy send
        wait_until(lambda: refuses_connections(port), timeout=30, what="the server to stop taking connections")
        assert not in_flight.done()

        (tmp_path / "release").touch()
        assert in_flight.result(timeout=30) == (200, "finished after release")
        assert server.wait(timeout=30) == 0


@pytest.mark.parametrize("server", [web_server, gunicorn], ids=["granian", "gunicorn (bench runner-up)"])
def test_two_servers_on_one_machine_leave_no_control_socket_to_fight_over(tmp_path: Path, server):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    with server(tmp_path / "one.log", **env) as one, server(tmp_path / "two.log", **env) as two:
        assert Browserless(one).request("/accounts/login/")[0] == 200
        assert Browserless(two).request("/accounts/login/")[0] == 200
    assert list(home.rglob("*")) == []
