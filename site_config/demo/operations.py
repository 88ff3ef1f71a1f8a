"""The demo operations: reissue every ticket of an event (a new code, reissue_count + 1), or the tickets
selected in the admin, and export an event's tickets to a file (CSV or XLSX)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import CharField, Count, F, QuerySet, Value
from django.db.models.functions import MD5, Cast, Concat, Mod, Substr
from django.urls import reverse
from django.utils import timezone
from pydantic import Field

from batches.operations import BatchContext, Export, ItemContext, ObjectId, Operation, register
from batches.selection import SelectedRows

from .models import Event, Ticket


class SeatCannotBeReissued(Exception):
    """The demo's deterministic failure, so that failed items can be seen."""


@register
class ReissueTickets(Operation):
    name = "reissue_tickets"
    label = "Reissue tickets"
    items_name = "tickets"
    item_name = "ticket"
    expected_errors = (SeatCannotBeReissued,)
    item_time_limit = settings.DEMO_ITEM_TIME_LIMIT
    notify_by_default = True  # minutes at 50 ms a ticket: worth being told

    class Params(Operation.Params):
        event_id: ObjectId = Field(description="The event whose tickets to reissue.")

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if not Event.objects.filter(pk=params["event_id"]).exists():
            raise ValidationError({"event_id": f"There is no event {params['event_id']}."})
        return params

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"event:{params['event_id']}"

    def scope_label(self, params: Mapping[str, Any]) -> str:
        name = Event.objects.filter(pk=params["event_id"]).values_list("name", flat=True).first()
        return name or f"event {params['event_id']}"

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        return self.may_see_all(user)

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        return user.has_perm("demo.reissue_tickets")

    def item_label(self, item: Ticket) -> str:
        return f"Seat {item.number} ({item.holder})"

    def confirmation(self, params: Mapping[str, Any]) -> str | None:
        event_id = params.get("event_id")  # the form of a refused start may hold anything
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            return None
        event = Event.objects.filter(pk=event_id).annotate(ticket_count=Count("tickets")).first()
        if event is None:
            return None
        count = event.ticket_count
        return f"Reissue all {count:,} ticket{'s' if count != 1 else ''} of {event.name}? Each gets a new code."

    def scope_url(self, params: Mapping[str, Any]) -> str | None:
        return reverse("demo:event_detail", args=[params["event_id"]])

    def items(self, params: Mapping[str, Any]) -> QuerySet[Ticket]:
        return Ticket.objects.filter(event_id=params["event_id"])

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        self._work(1)
        if self._blocked(item.number):
            raise SeatCannotBeReissued(f"Seat {item.number} is blocked by the venue.")
        Ticket.objects.filter(pk=item.pk).update(
            code=secrets.token_hex(8), reissue_count=F("reissue_count") + 1, reissued_at=timezone.now()
        )

    def handle_many(self, items: QuerySet[Ticket], ctx: BatchContext) -> None:
        """The same effect for a whole page in one UPDATE; each ticket's new code differs."""
        every = settings.DEMO_FAIL_EVERY
        if every and items.alias(seat=Mod("number", every)).filter(seat=0).exists():
            raise SeatCannotBeReissued("A seat on this page is blocked.")  # redone one by one
        new_code = Substr(MD5(Concat(F("code"), Value(f":{ctx.batch_id}:"), Cast("id", CharField()))), 1, 16)
        reissued = items.update(code=new_code, reissue_count=F("reissue_count") + 1, reissued_at=timezone.now())
        self._work(reissued)

    @staticmethod
    def _work(tickets: int) -> None:
        if settings.DEMO_ITEM_DELAY_MS:
            time.sleep(settings.DEMO_ITEM_DELAY_MS * tickets / 1000)  # stands in for slow calls elsewhere

    @staticmethod
    def _blocked(seat: int) -> bool:
        return bool(settings.DEMO_FAIL_EVERY) and seat % settings.DEMO_FAIL_EVERY == 0


@register
class ExportTickets(Export):
    """Every ticket of an event as a row of a file, in seat-key order: who holds it and its code."""

    name = "export_tickets"
    label = "Export tickets"
    items_name = "tickets"
    item_name = "ticket"
    chunk_size = settings.DEMO_EXPORT_CHUNK_SIZE

    class Params(Export.Params):
        event_id: ObjectId = Field(description="The event whose tickets to export.")

    clean_params = ReissueTickets.clean_params
    scope_label = ReissueTickets.scope_label
    scope_url = ReissueTickets.scope_url

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"event:{params['event_id']}"

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        return self.may_see_all(user)

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        return user.has_perm("demo.reissue_tickets")  # the codes get people in: the same right

    def items(self, params: Mapping[str, Any]) -> QuerySet[Ticket]:
        return Ticket.objects.filter(event_id=params["event_id"])

    def columns(self, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("Ticket", "id"),
            ("Seat", "number"),
            ("Holder", "holder"),
            ("Code", "code"),
            ("Reissued", "reissue_count"),
        ]

    def download_name(self, params: Mapping[str, Any], created_at: datetime) -> str:
        return f"tickets {self.scope_label(params)} {created_at:%Y-%m-%d}"


@register
class ReissueSelectedTickets(SelectedRows, ReissueTickets):
    """The same reissue over the tickets someone selected in the admin's ticket list (its action
    "Reissue selected tickets"): ticked ones, or all those its filters and search match."""

    name = "reissue_selected_tickets"
    label = "Reissue selected tickets"
    model = Ticket

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        return super().may_act(user, params) and self.may_see_all(user)
