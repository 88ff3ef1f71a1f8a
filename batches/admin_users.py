"""Django's user admin, without its way up: only a superuser grants rights or touches a superuser.

Out of the box, a staff user who may change users can make themselves superuser, give themselves
any permission, or set a superuser's password. Here such a user manages ordinary accounts only:
the privilege fields are read-only to them, and superusers are out of their reach (Django then
answers 403 on their pages, password page included)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

PRIVILEGES = ("is_staff", "is_superuser", "groups", "user_permissions")


class GuardedUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else readonly + PRIVILEGES

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._within_reach(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._within_reach(request, obj)

    @staticmethod
    def _within_reach(request: HttpRequest, obj: Any) -> bool:
        return obj is None or request.user.is_superuser or not obj.is_superuser
