"""A password change or reset revokes the user's API tokens: whoever knew the old password may hold one."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from batches.models import ApiToken
from batches.tokens import create_token

NEW_PASSWORD = "Tangerine-Lighthouse-48"


def api_status(raw: str) -> int:
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/batches").status_code


@pytest.fixture
def alice(make_user):
    return make_user("alice", email="alice@example.com")


def test_changing_ones_password_revokes_ones_tokens_and_nobody_elses(alice, make_user):
    _, raw = create_token(alice, "nightly sync")
    _, bobs = create_token(make_user("bob"), "bob's")
    client = Client()
    client.force_login(alice)

    response = client.post(
        reverse("password_change"),
        {"old_password": "pw-alice", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert api_status(raw) == 401
    assert api_status(bobs) == 200
    assert ApiToken.objects.get(name="nightly sync").revoked_at is not None


def test_a_password_reset_revokes_the_tokens(alice):
    _, raw = create_token(alice, "nightly sync")
    client = Client()
    uid = urlsafe_base64_encode(force_bytes(alice.pk))
    link = client.get(reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(alice)]))
    assert link.status_code == 302

    response = client.post(link.url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert response.status_code == 302 and response.url == reverse("password_reset_complete")
    assert api_status(raw) == 401


def test_an_admin_setting_the_password_revokes_the_tokens(admin_client, alice):
    _, raw = create_token(alice, "nightly sync")

    response = admin_client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert api_status(raw) == 401


def test_set_password_and_save_revokes_but_logins_and_other_edits_do_not(alice, settings):
    _, raw = create_token(alice, "nightly sync")
    # A hash from fewer iterations than today's: the next login upgrades it, which is no password change.
    weak = PBKDF2PasswordHasher().encode("pw-alice", "somesalt1234", iterations=1000)
    type(alice).objects.filter(pk=alice.pk).update(password=weak)

    assert Client().post(reverse("login"), {"username": "alice", "password": "pw-alice"}).status_code == 302
    alice.refresh_from_db()
    assert alice.password != weak  # upgraded on login
    alice.email = "alice@example.org"
    alice.save()
    assert api_status(raw) == 200

    alice.set_password(NEW_PASSWORD)
    alice.save()

    assert api_status(raw) == 401
    _, fresh = create_token(alice, "after the change")
    assert api_status(fresh) == 200
