"""The JSON API: every status code it promises, Idempotency-Key, tokens and sessions, the report."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from batches.engine import runner
from batches.models import ApiToken, Batch, BatchStatus, IdempotencyRecord, ItemFailure
from batches.tokens import create_token, revoke

pytestmark = pytest.mark.django_db


def api_client(user) -> Client:
    _, raw = create_token(user, "tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def api(alice) -> Client:
    return api_client(alice)


def post(client: Client, path: str, body: object = None, **headers: str):
    return client.post(path, json.dumps(body or {}), content_type="application/json", headers=headers)


def start(client: Client, event, **headers: str):
    return post(client, "/api/batches", {"operation": "reissue_tickets", "params": {"event_id": event.pk}}, **headers)


def test_start_answers_202_with_location_retry_after_and_the_status(api, event):
    response = start(api, event)

    batch = Batch.objects.get()
    assert response.status_code == 202
    assert response["Location"] == f"/api/batches/{batch.pk}"
    assert response["Retry-After"] == "1"
    body = response.json()
    assert body["id"] == batch.pk and body["status"] == "queued" and body["active"] is True
    assert body["scope"] == f"event:{event.pk}" and body["scope_label"] == "Gala"
    assert body["created_by"] == "alice" and body["done"] == 0 and body["total"] is None
    assert body["links"]["self"] == response["Location"] and body["links"]["cancel"]

    polled = api.get(response["Location"])
    assert polled.status_code == 200 and polled.json()["id"] == batch.pk and polled["Retry-After"] == "1"


def test_a_second_start_is_409_naming_the_active_batch(api, event, make_user):
    first = start(api, event).json()
    for client in (api, api_client(make_user("bob"))):
        response = start(client, event)
        assert response.status_code == 409
        body = response.json()
        assert body["error"]["code"] == "batch_active"
        assert body["batch"]["id"] == first["id"] and response["Location"] == f"/api/batches/{first['id']}"
    assert Batch.objects.count() == 1


def test_anonymous_and_bad_tokens_get_401_json(alice, event):
    _, raw = create_token(alice, "old")
    revoke(ApiToken.objects.all())
    for client in (Client(), Client(HTTP_AUTHORIZATION="Bearer nope"), Client(HTTP_AUTHORIZATION=f"Bearer {raw}")):
        response = client.get("/api/batches")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert start(Client(), event).status_code == 401
    assert not Batch.objects.exists()


def test_someone_elses_batch_is_404(api, event, make_user):
    batch_id = start(api, event).json()["id"]
    mallory = api_client(make_user("mallory", may_reissue=False))
    for response in [
        mallory.get(f"/api/batches/{batch_id}"),
        mallory.get(f"/api/batches/{batch_id}/failures"),
        mallory.get(f"/api/batches/{batch_id}/report.csv"),
        post(mallory, f"/api/batches/{batch_id}/cancel"),
        post(mallory, f"/api/batches/{batch_id}/retry-failed"),
        start(mallory, event),
        api.get("/api/batches/987654"),
    ]:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert mallory.get("/api/batches").json()["count"] == 0
    assert Batch.objects.get().is_active


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"operation": "reissue_tickets", "params": {}}, "invalid_params", {"params.event_id"}),
        ({"operation": "reissue_tickets", "params": {"event_id": "x"}}, "invalid_params", {"params.event_id"}),
        ({"operation": "reissue_tickets", "params": {"event_id": 999999}}, "invalid_params", {"params.event_id"}),
        ({"params": {}}, "invalid_request", {"body.operation"}),
        ({"operation": "reissue_tickets", "params": [1]}, "invalid_request", {"body.params"}),
    ],
)
def test_bad_params_are_400_with_field_errors(api, body, code, fields):
    response = post(api, "/api/batches", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and set(error["fields"]) == fields and error["message"]
    assert not Batch.objects.exists()


def test_unknown_operation_is_400_listing_the_known_ones(api):
    response = post(api, "/api/batches", {"operation": "launch_rockets", "params": {}})
    assert response.status_code == 400
    error = response.json()["error"]
    known = ["export_tickets", "mark_records", "reissue_selected_tickets", "reissue_tickets"]
    assert error["code"] == "unknown_operation" and error["known_operations"] == known
    assert "launch_rockets" in error["message"]


def test_malformed_json_and_oversized_bodies(api, settings):
    response = api.post("/api/batches", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"

    settings.BATCHES_API_MAX_BODY_BYTES = 1024
    big = {"operation": "reissue_tickets", "params": {"event_id": 1, "pad": "x" * 2000}}
    response = post(api, "/api/batches", big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert not Batch.objects.exists()


def test_idempotency_key_replays_the_first_answer(api, event):
    first = start(api, event, **{"Idempotency-Key": '"k-1"'})
    replay = start(api, event, **{"Idempotency-Key": '"k-1"'})

    assert first.status_code == replay.status_code == 202
    assert replay.json() == json.loads(json.dumps(first.json()))
    assert replay["Location"] == first["Location"] and replay["Retry-After"] == "1"
    assert replay["Idempotent-Replayed"] == "true"
    assert Batch.objects.count() == 1


def test_idempotency_key_with_another_body_is_422(api, event, make_event):
    start(api, event, **{"Idempotency-Key": "k-2"})
    other = make_event(tickets=1)
    response = start(api, other, **{"Idempotency-Key": "k-2"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "idempotency_key_reused"
    assert Batch.objects.count() == 1


def test_idempotency_key_in_flight_is_409_and_an_abandoned_one_is_reclaimed(api, alice, event):
    record = IdempotencyRecord.objects.create(
        user=alice, key="k-3", fingerprint="", expires_at=timezone.now() + timedelta(hours=1)
    )
    from batches import idempotency

    body = {"operation": "reissue_tickets", "params": {"event_id": event.pk}}
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        fingerprint=idempotency.fingerprint("POST", "/api/batches", body)
    )
    response = start(api, event, **{"Idempotency-Key": "k-3"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "idempotency_key_in_flight"

    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert start(api, event, **{"Idempotency-Key": "k-3"}).status_code == 202


def test_idempotency_keys_belong_to_their_user_expire_and_errors_are_not_kept(api, event, make_user):
    start(api, event, **{"Idempotency-Key": "shared"})
    bob = api_client(make_user("bob"))
    response = start(bob, event, **{"Idempotency-Key": "shared"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "batch_active", "not alice's replay"
    assert not IdempotencyRecord.objects.filter(user__username="bob").exists(), "a 409 is not kept"

    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = start(api, event, **{"Idempotency-Key": "shared"})
    assert response.status_code == 409, "an expired key is a new request"


def test_session_auth_needs_csrf_for_writes(alice, event):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/batches").status_code == 200
    assert start(client, event).status_code == 403
    client.get("/")  # sets the CSRF cookie, as the web UI's pages do
    token = client.cookies["csrftoken"].value
    assert start(client, event, **{"X-CSRFToken": token}).status_code == 202


def test_list_filters_and_paginates(api, alice, make_event):
    events = [make_event(tickets=1) for _ in range(5)]
    for event in events:
        start(api, event)
    Batch.objects.filter(scope_key=f"event:{events[0].pk}").update(status=BatchStatus.FINISHED)

    page = api.get("/api/batches?page_size=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["previous"] is None
    second = api.get(page["next"]).json()
    assert len(second["results"]) == 2 and second["previous"]
    assert {b["id"] for b in page["results"]}.isdisjoint(b["id"] for b in second["results"])

    finished = api.get("/api/batches?status=finished").json()
    assert [b["scope"] for b in finished["results"]] == [f"event:{events[0].pk}"]
    assert api.get("/api/batches?operation=nope").json()["count"] == 0
    assert api.get("/api/batches?status=bogus").status_code == 400
    assert api.get("/api/batches?page=99").json()["results"] == []


def test_cancel_and_retry_failed(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 7
    batch_id = start(api, event).json()["id"]

    response = post(api, f"/api/batches/{batch_id}/retry-failed")
    assert response.status_code == 409 and response.json()["error"]["code"] == "batch_active"

    cancelled = post(api, f"/api/batches/{batch_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelled_by"] == "alice"
    again = post(api, f"/api/batches/{batch_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "batch_ended"

    response = post(api, f"/api/batches/{batch_id}/retry-failed")
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_failed_items"

    full = start(api, event).json()["id"]
    for chunk_id in runner.plan(full):
        runner.run_chunk(chunk_id, budget_seconds=600)
    response = post(api, f"/api/batches/{full}/retry-failed")
    assert response.status_code == 202
    assert response.json()["retry_of"] == full and response["Location"] == f"/api/batches/{response.json()['id']}"


def test_failures_and_the_csv_report(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 7
    batch_id = start(api, event).json()["id"]
    for chunk_id in runner.plan(batch_id):
        runner.run_chunk(chunk_id, budget_seconds=600)

    failures = api.get(f"/api/batches/{batch_id}/failures?page_size=1").json()
    assert failures["count"] == 2 and len(failures["results"]) == 1 and failures["next"]
    assert "blocked by the venue" in failures["results"][0]["error"]

    response = api.get(f"/api/batches/{batch_id}/report.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "item_key,outcome,error,item" and len(lines) == 21
    outcomes = [line.split(",")[1] for line in lines[1:]]
    assert outcomes.count("done") == 18 and outcomes.count("failed") == 2


def test_the_report_of_a_batch_whose_scope_was_deleted_lists_its_items_as_gone(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 7
    batch_id = start(api, event).json()["id"]
    for chunk_id in runner.plan(batch_id):
        runner.run_chunk(chunk_id, budget_seconds=600)
    failed = sorted(ItemFailure.objects.filter(batch_id=batch_id).values_list("item_pk", flat=True))
    event.delete()  # its tickets with it

    response = api.get(f"/api/batches/{batch_id}/report.csv")

    assert response.status_code == 200
    rows = list(csv.reader(b"".join(response.streaming_content).decode().splitlines()))
    assert rows[0] == ["item_key", "outcome", "error", "item"]
    assert [row[1] for row in rows[1:]].count("done") == 18 and len(rows) == 21
    assert [int(key) for key, outcome, _, _ in rows[1:] if outcome == "failed"] == failed
    assert all("blocked by the venue" in error for _, outcome, error, _ in rows[1:] if outcome == "failed")
    assert {item for *_, item in rows[1:]} == {"(no longer exists)"}


def test_the_report_counts_what_a_cancel_left_as_skipped(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.BATCHES_CHECKPOINT_SECONDS = 0, 0.0
    batch_id = start(api, event).json()["id"]
    (chunk_id,) = runner.plan(batch_id)
    for _ in range(5):
        runner.run_checkpoint(chunk_id)
    post(api, f"/api/batches/{batch_id}/cancel")
    lines = b"".join(api.get(f"/api/batches/{batch_id}/report.csv").streaming_content).decode().splitlines()
    outcomes = [line.split(",")[1] for line in lines[1:]]
    assert (outcomes.count("done"), outcomes.count("skipped")) == (5, 15)


def test_operations_are_listed_with_their_params(api):
    # Every registered operation: the demo's, and the engine's own tests' (tests/testapp).
    listed = {operation["name"]: operation for operation in api.get("/api/operations").json()}
    assert set(listed) == {"reissue_tickets", "reissue_selected_tickets", "export_tickets", "mark_records"}
    export_format = listed["export_tickets"]["params_schema"]["properties"]["format"]
    assert export_format["enum"] == ["csv", "xlsx"] and export_format["default"] == "csv"
    operation = listed["reissue_tickets"]
    assert operation["label"] == "Reissue tickets"
    schema = operation["params_schema"]
    assert schema["required"] == ["event_id"] and schema["additionalProperties"] is False
    assert schema["properties"]["event_id"]["type"] == "integer"
    assert (schema["properties"]["event_id"]["minimum"], schema["properties"]["event_id"]["maximum"]) == (1, 2**63 - 1)


def test_docs_and_schema_are_served_without_a_cdn(client):
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/batches", "/api/batches/{batch_id}", "/api/operations"} <= set(schema["paths"])
    docs = client.get("/api/docs").content.decode()
    scripts = [part.split('"')[0] for part in docs.split('src="')[1:]]
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    for src in scripts:
        assert client.get(src).status_code == 200


def test_a_nul_byte_in_any_filter_is_a_400_in_the_error_shape(api, event):
    batch_id = start(api, event).json()["id"]
    for url in [
        "/api/batches?operation=%00",
        "/api/batches?status=%00",
        "/api/batches?nothing%00=1",
        f"/api/batches/{batch_id}/failures?page=1%00",
    ]:
        response = api.get(url)
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "nul_character" and "%00" in response.json()["error"]["message"]
    response = start(api, event, **{"Idempotency-Key": "k\x00"})  # a header the database would see
    assert response.status_code == 400 and response.json()["error"]["code"] == "nul_character"
    assert Batch.objects.count() == 1


def test_unsupported_methods_answer_405_in_the_error_shape_with_allow(api, event):
    batch_id = start(api, event).json()["id"]
    for method, url, allowed in [
        ("put", "/api/batches", "GET, POST"),
        ("delete", "/api/batches", "GET, POST"),
        ("delete", f"/api/batches/{batch_id}", "GET"),
        ("patch", "/api/operations", "GET"),
        ("get", f"/api/batches/{batch_id}/cancel", "POST"),
    ]:
        response = getattr(api, method)(url)
        assert response.status_code == 405, (method, url)
        assert response["Allow"] == allowed and response["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] == "method_not_allowed" and method.upper() in error["message"]
    assert Batch.objects.get().is_active


def test_unknown_paths_under_the_api_answer_404_in_the_error_shape(api):
    for response in [api.get("/api/nope"), api.get("/api/batches/"), post(api, "/api/batches/1/nope")]:
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


def finished_with_a_failure(client: Client, event) -> int:
    batch_id = start(client, event).json()["id"]
    Batch.objects.filter(pk=batch_id).update(status=BatchStatus.FINISHED, total=20, done_count=19, failed_count=1)
    ItemFailure.objects.create(batch_id=batch_id, item_key="1", item_pk=1, error="boom")
    return batch_id


def test_retry_of_a_batch_whose_event_was_deleted_or_operation_removed_is_409_and_starts_nothing(
    api, event, make_event
):
    batch_id = finished_with_a_failure(api, event)
    event_id = event.pk
    event.delete()
    response = post(api, f"/api/batches/{batch_id}/retry-failed")
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "params_invalid" and f"There is no event {event_id}." in body["error"]["message"]
    assert body["batch"]["id"] == batch_id

    other = finished_with_a_failure(api, make_event(tickets=2))
    Batch.objects.filter(pk=other).update(operation="gone_operation")
    response = post(api, f"/api/batches/{other}/retry-failed")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "operation_not_installed" and "'gone_operation'" in error["message"]
    assert Batch.objects.count() == 2


def test_the_report_of_a_batch_whose_operation_was_removed_is_409_before_streaming(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS = 0
    batch_id = start(api, event).json()["id"]
    for chunk_id in runner.plan(batch_id):
        runner.run_chunk(chunk_id, budget_seconds=600)
    Batch.objects.filter(pk=batch_id).update(operation="gone_operation")

    response = api.get(f"/api/batches/{batch_id}/report.csv")
    assert response.status_code == 409 and not response.streaming
    assert response.json()["error"]["code"] == "operation_not_installed"
    assert api.get(f"/api/batches/{batch_id}/failures").status_code == 200


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx=1", "\rx=1"]


def test_the_report_neutralises_cells_a_spreadsheet_would_run_as_formulas(api, event, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 3  # seats 3, 6, 9, 12, 15, 18 fail
    batch_id = start(api, event).json()["id"]
    for chunk_id in runner.plan(batch_id):
        runner.run_chunk(chunk_id, budget_seconds=600)
    failures = list(ItemFailure.objects.filter(batch_id=batch_id).order_by("item_pk"))
    assert len(failures) == len(FORMULAS)
    for failure, formula in zip(failures, FORMULAS, strict=True):
        ItemFailure.objects.filter(pk=failure.pk).update(error=formula)

    text = b"".join(api.get(f"/api/batches/{batch_id}/report.csv").streaming_content).decode()
    errors = [row[2] for row in csv.reader(io.StringIO(text, newline="")) if row[1] == "failed"]
    assert errors == ["'" + formula for formula in FORMULAS]


def test_the_schema_documents_the_limits_and_the_405(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path, method in [("/api/batches", "post"), ("/api/batches/{batch_id}/retry-failed", "post")]:
        limited = paths[path][method]["responses"]["429"]
        assert limited["headers"]["Retry-After"]["required"] is True
    assert all("405" in operation["responses"] for path in paths.values() for operation in path.values())
