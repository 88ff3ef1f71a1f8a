"""The demo operation: reissue every ticket of an event (a new code, reissue_count + 1)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import CharField, F, QuerySet, Value
from django.db.models.functions import MD5, Cast, Concat, Substr
from django.utils import timezone

from batches.operations import BatchContext, ItemContext, Operation, register

from .models import Event, Ticket


class SeatCannotBeReissued(Exception):
    """The demo's deterministic failure, so that failed items can be seen."""


@register
class ReissueTickets(Operation):
    name = "reissue_tickets"
    label = "Reissue tickets"
    item_time_limit = settings.DEMO_ITEM_TIME_LIMIT
    params_schema = {
        "type": "object",
        "properties": {"event_id": {"type": "integer", "description": "The event whose tickets to reissue."}},
        "required": ["event_id"],
    }

    def clean_params(self, data: Mapping[str, Any]) -> dict[str, Any]:
        raw = data.get("event_id")
        try:
            event_id = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValidationError({"event_id": "Choose an event: event_id must be a whole number."}) from None
        if not Event.objects.filter(pk=event_id).exists():
            raise ValidationError({"event_id": f"There is no event {event_id}."})
        return {"event_id": event_id}

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"event:{params['event_id']}"

    def scope_label(self, params: Mapping[str, Any]) -> str:
        return Event.objects.values_list("name", flat=True).get(pk=params["event_id"])

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        return self.may_see_all(user)

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        return user.has_perm("demo.reissue_tickets")

    def items(self, params: Mapping[str, Any]) -> QuerySet[Ticket]:
        return Ticket.objects.filter(event_id=params["event_id"])

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        self._check([item])
        Ticket.objects.filter(pk=item.pk).update(
            code=secrets.token_hex(8), reissue_count=F("reissue_count") + 1, reissued_at=timezone.now()
        )

    def handle_many(self, items: list[Ticket], ctx: BatchContext) -> None:
        """The same effect for a whole page in one UPDATE; each ticket's new code differs."""
        self._check(items)
        new_code = Substr(MD5(Concat(F("code"), Value(f":{ctx.batch_id}:"), Cast("id", CharField()))), 1, 16)
        Ticket.objects.filter(pk__in=[item.pk for item in items]).update(
            code=new_code, reissue_count=F("reissue_count") + 1, reissued_at=timezone.now()
        )

    @staticmethod
    def _check(items: list[Ticket]) -> None:
        if settings.DEMO_ITEM_DELAY_MS:
            time.sleep(settings.DEMO_ITEM_DELAY_MS * len(items) / 1000)  # stands in for slow calls elsewhere
        for item in items:
            if settings.DEMO_FAIL_EVERY and item.number % settings.DEMO_FAIL_EVERY == 0:
                raise SeatCannotBeReissued(f"Seat {item.number} is blocked by the venue.")
