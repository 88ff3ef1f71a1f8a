"""Django's user admin, without its way up: only a superuser grants rights or touches a staff account.

Out of the box, a staff user who may change users can make themselves superuser, give themselves
any permission, or set another staff member's password and sign in as them (their batches, their
rights). Here such a user manages ordinary (non-staff) accounts only: the privilege fields are
read-only to them, and every staff account, their own included, is out of their reach: Django
then answers 403 on its change, password and delete pages, and refuses a bulk delete that
includes one. They change their own password through the normal form, which asks for the old one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from batches.admin.selection import CheckedSelection

PRIVILEGES = ("is_staff", "is_superuser", "groups", "user_permissions")


class GuardedUserAdmin(CheckedSelection, UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else readonly + PRIVILEGES

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._within_reach(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Also asked for each account a bulk delete would remove (Django's delete_selected).
        return super().has_delete_permission(request, obj) and self._within_reach(request, obj)

    @staticmethod
    def _within_reach(request: HttpRequest, obj: Any) -> bool:
        return obj is None or request.user.is_superuser or not (obj.is_staff or obj.is_superuser)
