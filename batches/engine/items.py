"""The items of a batch: its operation's items, or only the failed ones of the batch it retries."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from batches.models import Batch, ItemFailure
from batches.operations import Operation


def batch_items(batch: Batch, op: Operation) -> QuerySet[Any]:
    items = op.items(batch.params)
    if batch.retry_of_id:
        items = items.filter(pk__in=ItemFailure.objects.filter(batch_id=batch.retry_of_id).values("item_pk"))
    return items
