"""Reissue the tickets of an event that were never reissued: like "mark unpaid invoices paid", each
item it does leaves its own `items()` (reissue_count=0), so a report that ran `items()` again after
the run would list none of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from site_config.demo.models import Ticket
from site_config.demo.operations import ReissueTickets


class ReissueUnreissued(ReissueTickets):
    name = "reissue_unreissued"
    label = "Reissue the tickets never reissued"

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"unreissued:{params['event_id']}"

    def items(self, params: Mapping[str, Any]) -> QuerySet[Ticket]:
        return Ticket.objects.filter(event_id=params["event_id"], reissue_count=0)
