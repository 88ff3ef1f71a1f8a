"""Params are checked strictly against the operation's declared schema, on the API and in forms,
and only after the user's right: a user who may not act learns nothing about which ledgers exist."""

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pydantic import Field

from batches import operations
from batches.models import Batch
from batches.operations import ObjectId, Operation
from batches.tokens import create_token
from tests.support import HTMX
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db

START_URL = "/batches/start/mark_records/"  # the test operation's start, as the web UI posts it

# Digits that int() reads as 1 and 2, and that are no ASCII digits.
ARABIC_ONE, FULLWIDTH_ONE, FULLWIDTH_TWO = "\u0661", "\uff11", "\uff12"


@pytest.fixture
def ledgers_1_and_10(db):
    """What loose parsing read 1.5, true, an Arabic-Indic "1" or " 1 " as (ledger 1), and "1_0" (ledger 10)."""
    for pk in (1, 10):
        Ledger.objects.create(pk=pk, name=f"Ledger {pk}")


def api_client(user) -> Client:
    _, raw = create_token(user, "tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def post_raw(client: Client, body: str):
    return client.post("/api/batches", body, content_type="application/json")


def post_params(client: Client, params: Any, operation: str = "mark_records"):
    return post_raw(client, json.dumps({"operation": operation, "params": params}))


@pytest.mark.parametrize(
    "value",
    [1.5, 1.0, True, "1", ARABIC_ONE, FULLWIDTH_ONE, " 1 ", "1_0", "+1", None, [1], {"id": 1}, 0, -1, 2**63, 10**30],
    ids=repr,
)
def test_the_api_takes_only_a_json_integer_in_range_for_an_id(make_clerk, ledgers_1_and_10, value):
    response = post_params(api_client(make_clerk("alice")), {"ledger_id": value})

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_params" and set(error["fields"]) == {"params.ledger_id"}
    assert not Batch.objects.exists()


def test_unknown_params_are_refused_by_name(make_clerk, ledger):
    response = post_params(api_client(make_clerk("alice")), {"ledger_id": ledger.pk, "dry_run": True})
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields == {"params.dry_run": ["Unknown parameter: this operation does not take it."]}
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "number", ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1" + "0" * 5000], ids=lambda n: n[:12]
)
def test_non_finite_and_overflowing_numbers_are_a_400_not_a_500(make_clerk, ledger, number):
    api = api_client(make_clerk("alice"))
    response = post_raw(api, f'{{"operation": "mark_records", "params": {{"ledger_id": {number}}}}}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in {"invalid_request", "invalid_params"} and error["message"]
    assert not Batch.objects.exists()


def test_a_json_integer_starts(make_clerk, ledger):
    response = post_params(api_client(make_clerk("alice")), {"ledger_id": ledger.pk})
    assert response.status_code == 202 and response.json()["params"] == {"ledger_id": ledger.pk}


@pytest.mark.parametrize(
    "value", ["1.5", "1.0", "true", ARABIC_ONE, FULLWIDTH_ONE, " 1 ", "1_0", "+1", "", "0x1", "1e1", "1\n"]
)
def test_a_form_takes_only_plain_ascii_digits(client, make_clerk, ledgers_1_and_10, value):
    client.force_login(make_clerk("alice"))
    for extra in ({}, HTMX):
        response = client.post(START_URL, {"ledger_id": value}, **extra)
        assert response.status_code == 400, (value, response.content)
        assert "ledger_id: Must be a whole number written with the digits 0-9" in response.content.decode()
    assert not Batch.objects.exists()


def test_a_form_with_plain_digits_starts(client, make_clerk, ledger):
    client.force_login(make_clerk("alice"))
    response = client.post(START_URL, {"ledger_id": str(ledger.pk)})
    assert response.status_code == 303
    assert Batch.objects.get().params == {"ledger_id": ledger.pk}


def test_who_may_not_act_gets_404_whether_the_ledger_exists_or_not(client, make_clerk, ledger):
    mallory = make_clerk("mallory", may_mark=False)
    api = api_client(mallory)
    client.force_login(mallory)
    for ledger_id in (ledger.pk, 999999):
        response = post_params(api, {"ledger_id": ledger_id})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert client.post(START_URL, {"ledger_id": str(ledger_id)}).status_code == 404
        assert client.post(START_URL, {"ledger_id": str(ledger_id)}, **HTMX).status_code == 404
    # Those who may act are told.
    response = post_params(api_client(make_clerk("alice")), {"ledger_id": 999999})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"params.ledger_id": ["There is no ledger 999999."]}
    assert not Batch.objects.exists()


class _Annotate(Operation):
    """A future operation: strict checking comes from declaring the params, nothing more."""

    name, label = "annotate_records", "Annotate records"

    class Params(Operation.Params):
        ledger_id: ObjectId
        note: str = Field(max_length=200)
        copies: int | None = None

    def scope(self, params):
        return f"ledger:{params['ledger_id']}"

    def may_act(self, user, params):
        return True

    def items(self, params):
        raise NotImplementedError


@pytest.fixture
def annotate(monkeypatch):
    monkeypatch.setitem(operations._registry, _Annotate.name, _Annotate())
    return _Annotate.name


def test_any_declared_operation_is_strict_and_describes_its_params(make_clerk, ledger, annotate):
    api = api_client(make_clerk("alice"))
    schema = next(op for op in api.get("/api/operations").json() if op["name"] == annotate)["params_schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["ledger_id", "note"]
    assert schema["properties"]["ledger_id"]["maximum"] == 2**63 - 1

    for params, field in [
        ({"ledger_id": ledger.pk, "note": "a\x00b"}, "params.note"),  # Postgres refuses NUL in jsonb
        ({"ledger_id": ledger.pk, "note": "\ud800"}, "params.note"),  # and unpaired surrogates
        ({"ledger_id": ledger.pk, "note": 5}, "params.note"),
        ({"ledger_id": ledger.pk, "note": "x", "copies": 2**70}, "params.copies"),  # past bigint
        ({"ledger_id": ledger.pk, "note": "x", "copies": 2.0}, "params.copies"),
    ]:
        response = post_params(api, params, operation=annotate)
        assert response.status_code == 400, (params, response.content)
        assert set(response.json()["error"]["fields"]) == {field}, params
    assert not Batch.objects.exists()

    started = post_params(api, {"ledger_id": ledger.pk, "note": "=1+1"}, operation=annotate)
    assert started.status_code == 202
    assert started.json()["params"] == {"ledger_id": ledger.pk, "note": "=1+1", "copies": None}


def test_a_form_reads_a_declared_optional_integer_strictly_too(client, make_clerk, ledger, annotate):
    client.force_login(make_clerk("alice"))
    url = reverse("batches:start", args=[annotate])
    refused = client.post(url, {"ledger_id": str(ledger.pk), "note": "n", "copies": FULLWIDTH_TWO}, **HTMX)
    assert refused.status_code == 400 and "copies: Must be a whole number" in refused.content.decode()
    assert client.post(url, {"ledger_id": str(ledger.pk), "note": "n", "copies": "2"}).status_code == 303
    assert Batch.objects.get().params == {"ledger_id": ledger.pk, "note": "n", "copies": 2}
