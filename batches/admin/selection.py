"""Admin actions on a forged selection: a clear message, never a 500.

Django's admin filters the changelist by the posted `_selected_action` ids as they come; a value
that is not an id (`x`, or a number past the column's range) then fails in the query. Checked
here first, so that the action is not run and the person learns why."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

_LARGEST_ID = 2**63 - 1


class CheckedSelection(admin.ModelAdmin):
    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if all(_is_id(value) for value in selected):
            return super().response_action(request, queryset)
        self.message_user(
            request, "Nothing was done: the selection holds something that is not an item of this list.", messages.ERROR
        )
        return HttpResponseRedirect(request.get_full_path())


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) <= _LARGEST_ID
