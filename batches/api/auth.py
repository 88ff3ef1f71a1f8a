"""API clients send a personal token; the same-origin web UI may use its session (with CSRF)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import HttpBearer, django_auth

from .tokens import user_for_token


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        return user_for_token(token)


API_AUTH = [BearerToken(), django_auth]
