"""The API over real HTTP: truly concurrent clients, and schemathesis fuzzing the live schema."""

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import pytest

from batches.models import Batch
from batches.tokens import create_token
from tests.support import BASE_DIR, web_server

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = 50


def post_json(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, Message]:
    """POST `body` as JSON: the status, the JSON answer and the headers (names in any case)."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), error.headers


def fire(url: str, body: dict, headers_for: list[dict[str, str]]) -> list[tuple[int, dict, Message]]:
    barrier = threading.Barrier(len(headers_for))

    def one(headers: dict[str, str]) -> tuple[int, dict, Message]:
        barrier.wait()
        return post_json(url, body, headers)

    with ThreadPoolExecutor(max_workers=len(headers_for)) as pool:
        return list(pool.map(one, headers_for))


@pytest.fixture
def setup(tmp_path, make_event, make_user):
    """The web server with enough threads to take every request at once, each on its own connection."""
    event = make_event(tickets=5)
    _, raw = create_token(make_user("alice"), "tests")
    body = {"operation": "reissue_tickets", "params": {"event_id": event.pk}}
    with web_server(tmp_path / "web.log", threads=CONCURRENT // 2) as base:
        yield f"{base}/api/batches", body, {"Authorization": f"Bearer {raw}"}


def test_concurrent_posts_with_one_idempotency_key_start_one_batch(setup):
    url, body, auth = setup
    answers = fire(url, body, [{**auth, "Idempotency-Key": '"same"'}] * CONCURRENT)

    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {202, 409}, statuses
    batch = Batch.objects.get()
    for status, payload, headers in answers:
        if status == 202:
            assert payload["id"] == batch.pk and headers["Location"] == f"/api/batches/{batch.pk}"
        else:
            assert payload["error"]["code"] == "idempotency_key_in_flight"
    assert statuses.count(202) >= 1


def test_concurrent_posts_with_different_keys_start_one_batch_and_409_the_rest(setup):
    url, body, auth = setup
    answers = fire(url, body, [{**auth, "Idempotency-Key": f"key-{n}"} for n in range(CONCURRENT)])

    batch = Batch.objects.get()
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [202] + [409] * (CONCURRENT - 1)
    for status, payload, headers in answers:
        assert headers["Location"] == f"/api/batches/{batch.pk}"
        if status == 409:
            assert payload["error"]["code"] == "batch_active" and payload["batch"]["id"] == batch.pk


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path, make_event, make_user):
    make_event(tickets=3)
    _, raw = create_token(make_user("alice"), "schemathesis")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with web_server(tmp_path / "web.log", workers=1, threads=2) as base:  # schemathesis sends one at a time
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{base}/api/openapi.json",
                "--header",
                f"Authorization: Bearer {raw}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance,response_headers_conformance,unsupported_method",
                "--generation-allow-x00",
                "true",
                "--max-examples",
                "40",
                "--seed",
                "20261123",
                # One worker: CPython 3.11.7's ast.parse is not thread-safe, and hypothesis parses
                # lambda sources with it ("AST constructor recursion depth mismatch").
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=BASE_DIR,
            # NaN, Infinity and 1e400 in bodies, NUL bytes in query strings: tests/schemathesis_hooks.py.
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"},
        )
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
