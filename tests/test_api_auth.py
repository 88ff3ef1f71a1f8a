"""Requests without usable credentials: 401 with WWW-Authenticate, whatever the method; a signed-in
session still needs its CSRF token for writes."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

START = {"operation": "reissue_tickets", "params": {"event_id": 1}}
NO_CREDENTIALS = [
    {},
    {"HTTP_AUTHORIZATION": "Basic YWxpY2U6cHc="},
    {"HTTP_AUTHORIZATION": "Bearer"},
    {"HTTP_AUTHORIZATION": "garbage"},
]


@pytest.mark.parametrize("headers", NO_CREDENTIALS, ids=["none", "basic", "bearer-without-token", "garbage"])
@pytest.mark.parametrize(
    "method,path", [("post", "/api/batches"), ("post", "/api/batches/1/cancel"), ("get", "/api/batches")]
)
def test_no_usable_credentials_get_401_with_www_authenticate(headers, method, path):
    client = Client(enforce_csrf_checks=True, **headers)
    response = getattr(client, method)(path, START, content_type="application/json")

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_signed_in_session_still_needs_its_csrf_token_to_write(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post("/api/batches", START, content_type="application/json")

    assert response.status_code == 403
    assert client.get("/api/batches").status_code == 200
