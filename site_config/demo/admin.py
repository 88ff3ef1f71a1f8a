from django.contrib import admin
from django.http import HttpRequest

from batches.admin.actions import batch_action
from batches.admin.selection import CheckedSelection

from .models import Event, Ticket
from .operations import ReissueSelectedTickets


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["name", "starts_at"]
    search_fields = ["name"]


@admin.register(Ticket)
class TicketAdmin(CheckedSelection, admin.ModelAdmin):  # a forged selection: a message, not a 500
    list_display = ["event", "number", "holder", "code", "reissue_count", "reissued_at"]
    list_filter = ["event"]
    search_fields = ["holder", "code"]
    list_select_related = ["event"]
    show_full_result_count = False  # one count of a filtered list (of up to millions), not two
    actions = [batch_action(ReissueSelectedTickets, name="reissue_selected", permissions=["reissue"])]

    def has_reissue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("demo.reissue_tickets")
