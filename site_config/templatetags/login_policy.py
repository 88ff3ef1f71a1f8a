"""What the login pages say about the lockout (settings AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME)."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.conf import settings

register = template.Library()


@dataclass(frozen=True)
class LoginPolicy:
    failure_limit: int
    cooloff_minutes: int


@register.simple_tag
def login_policy() -> LoginPolicy:
    return LoginPolicy(
        failure_limit=settings.AXES_FAILURE_LIMIT,
        cooloff_minutes=round(settings.AXES_COOLOFF_TIME.total_seconds() / 60),
    )
