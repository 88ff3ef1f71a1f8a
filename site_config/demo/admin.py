from django.contrib import admin

from .models import Event, Ticket


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["name", "starts_at"]
    search_fields = ["name"]


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ["event", "number", "holder", "code", "reissue_count", "reissued_at"]
    list_filter = ["event"]
    search_fields = ["holder", "code"]
    list_select_related = ["event"]
