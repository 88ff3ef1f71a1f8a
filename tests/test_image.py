"""The image's command run alone (`docker run`), as its user would: nothing configured but DATA_DIR."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support import BASE_DIR, WEB_COMMAND, free_port, serving


def alone(data_dir: Path, **env: str) -> dict[str, str]:
    """The environment of `docker run` of the image: its ENV lines, and none of the tests' settings."""
    return {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "DATA_DIR": str(data_dir), **env}


def test_the_web_command_alone_migrates_its_sqlite_file_serves_and_says_no_worker_runs_batches(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    env = alone(data_dir, WEB_HOST="127.0.0.1", WEB_PORT=str(port), WEB_CONCURRENCY="1", WEB_THREADS="2")
    log = tmp_path / "web.log"

    with serving(WEB_COMMAND, env, port, log):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as response:
            assert json.loads(response.read())["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=30) as response:
            assert response.status == 200

    assert {path.name for path in data_dir.iterdir()} >= {".secret_key", "db.sqlite3"}
    output = log.read_text()
    assert "no worker runs them" in output and "Traceback" not in output


def test_an_unwritable_data_dir_is_named_with_what_to_do_instead_of_a_traceback(tmp_path: Path):
    missing = tmp_path / "not-mounted"
    for command in ([*WEB_COMMAND], [sys.executable, "manage.py", "migrate"]):
        run = subprocess.run(command, cwd=BASE_DIR, env=alone(missing), capture_output=True, text=True, timeout=120)

        assert run.returncode != 0
        assert "Traceback" not in run.stderr
        assert f"DATA_DIR ({missing}) is not a directory" in run.stderr and "Mount a writable volume" in run.stderr
