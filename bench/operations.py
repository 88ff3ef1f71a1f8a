"""Operations that exist only for the benchmarks: no work, one UPDATE per item, or one per page."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from django.db.models import F, QuerySet

from batches.operations import BatchContext, ItemContext, ObjectId, Operation, register
from site_config.demo.models import Ticket


class _OverEvent(Operation):
    chunk_size = 1_000_000  # one chunk: one worker, measured alone

    class Params(Operation.Params):
        event_id: ObjectId

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"bench:{self.name}:{params['event_id']}"

    def may_act(self, user: Any, params: Mapping[str, Any]) -> bool:
        return True

    def items(self, params: Mapping[str, Any]) -> QuerySet[Ticket]:
        return Ticket.objects.filter(event_id=params["event_id"])


@register
class NoOp(_OverEvent):
    name, label = "bench_noop", "No work"

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        pass


@register
class Sleep5ms(_OverEvent):
    name, label = "bench_sleep", "5 ms of I/O per item"

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        time.sleep(0.005)


@register
class OneUpdate(_OverEvent):
    name, label = "bench_update", "One UPDATE per item"

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        Ticket.objects.filter(pk=item.pk).update(reissue_count=F("reissue_count") + 1)


@register
class BulkUpdate(OneUpdate):
    name, label = "bench_bulk_update", "One UPDATE per page"

    def handle_many(self, items: QuerySet[Ticket], ctx: BatchContext) -> None:
        items.update(reissue_count=F("reissue_count") + 1)


@register
class BulkUpdateSmallChunks(BulkUpdate):
    name, label = "bench_bulk_update_500", "One UPDATE per page, chunks of 500"
    chunk_size = 500  # the default: a checkpoint ends with its chunk, every 500 items


@register
class NoOpSmallChunks(NoOp):
    name, label = "bench_noop_500", "No work, chunks of 500"
    chunk_size = 500


@register
class OneUpdateSmallChunks(OneUpdate):
    name, label = "bench_update_500", "One UPDATE per item, chunks of 500"
    chunk_size = 500
