"""A batch's report: what it did to each item, from what its checkpoints recorded.

Done items come from the keys each checkpoint recorded (batches.done_keys), failed ones from the
failures recorded with their errors, skipped ones (after a cancel or a failure threshold) from the
items its unfinished chunks had not reached, as its operation lists them now, and in one row how
many were gone (deleted, or no longer its items) by the time their turn came. So the report of an
operation whose effect takes items out of its own `items()` (mark unpaid invoices paid) lists every
item it did, and an item deleted since is still listed, by its primary key, as no longer existing.

Everything is read in pages, merged in key order and streamed: a million items in constant memory.
Chunks are read once, first: what a checkpoint committed after that is left out, so that a running
batch's report lists each item once, as it stood then.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model

from .engine.done_keys import decode
from .engine.items import batch_items
from .models import Batch, Checkpoint, ItemFailure
from .operations import Operation

COLUMNS = ("item_key", "outcome", "error", "item")
GONE = "(no longer exists)"
# Checkpoint rows read at once: each holds the keys of up to a chunk's items, a few bytes a run.
_CHECKPOINTS_PER_PAGE = 50

Row = tuple[str, str, str, str]  # as COLUMNS
# (primary key, outcome, the key recorded for it or "", error, the item if already loaded)
_Outcome = tuple[int, str, str, str, Model | None]


@dataclass(frozen=True)
class _Chunk:
    after_key: int | None
    last_key: int
    cursor: int | None
    finished: bool


class _Reached:
    """How far each chunk of the batch had got when the report began."""

    def __init__(self, chunks: list[_Chunk]) -> None:
        self.chunks = chunks
        self.last_keys = [chunk.last_key for chunk in chunks]

    def __contains__(self, key: int) -> bool:
        index = bisect_left(self.last_keys, key)
        if index == len(self.chunks):
            return False
        cursor = self.chunks[index].cursor
        return cursor is not None and key <= cursor


def outcomes(batch: Batch, op: Operation, page_size: int = 2000) -> Iterator[Row]:
    """(item key, "done" | "failed" | "skipped", error, the item as people name it) for every item
    of the batch, in key order.

    When the batch's scope is gone (its event deleted, say), its skipped items cannot be listed:
    a last row with an empty key says how many. So does one for items done before checkpoints
    recorded their keys (batches that ran before this was installed).
    """
    rows = batch.chunks.order_by("index").values_list("after_key", "last_key", "cursor", "finished_at")
    reached = _Reached([_Chunk(after, last, cursor, finished is not None) for after, last, cursor, finished in rows])
    scope_gone = _scope_gone(batch, op)
    streams = [_done(batch, reached), _failed(batch, reached, page_size)]
    if not scope_gone:
        streams.append(_skipped(batch, op, reached, page_size))
    merged = heapq.merge(*streams, key=itemgetter(0))
    done = skipped = 0
    while page := list(islice(merged, page_size)):
        present = _present_items(op, batch.params, [pk for pk, _, _, _, item in page if item is None])
        for pk, outcome, key, error, loaded in page:
            item = loaded if loaded is not None else present.get(pk)
            done += outcome == "done"
            skipped += outcome == "skipped"
            if item is None:
                yield key or str(pk), outcome, error, GONE
            else:
                yield key or op.item_key(item), outcome, error, op.item_label(item)
    yield from _unlisted(batch, done, scope_gone, skipped)


def _done(batch: Batch, reached: _Reached) -> Iterator[_Outcome]:
    checkpoints = Checkpoint.objects.filter(batch=batch).order_by("first_key")
    after = None
    while True:
        page = (checkpoints if after is None else checkpoints.filter(first_key__gt=after))[:_CHECKPOINTS_PER_PAGE]
        rows = list(page.values_list("first_key", "last_key", "done_keys"))
        if not rows:
            return
        for first, last, keys in rows:
            if last in reached:  # a checkpoint commits with its chunk's cursor: reached, or not yet
                for start, end in decode(first, bytes(keys)):
                    for pk in range(start, end + 1):
                        yield pk, "done", "", "", None
        after = rows[-1][0]


def _failed(batch: Batch, reached: _Reached, page_size: int) -> Iterator[_Outcome]:
    failures = ItemFailure.objects.filter(batch=batch).order_by("item_pk").values_list("item_pk", "item_key", "error")
    after = None
    while page := list((failures if after is None else failures.filter(item_pk__gt=after))[:page_size]):
        for pk, key, error in page:
            if pk in reached:
                yield pk, "failed", key, error, None
        after = page[-1][0]


def _skipped(batch: Batch, op: Operation, reached: _Reached, page_size: int) -> Iterator[_Outcome]:
    """The items of each unfinished chunk beyond its cursor, as the operation lists them now."""
    items = batch_items(batch, op).order_by("pk")
    for chunk in reached.chunks:
        if chunk.finished:
            continue  # walked to its end: whatever it holds now was not there then
        after = chunk.cursor if chunk.cursor is not None else chunk.after_key
        in_chunk = items.filter(pk__lte=chunk.last_key)
        while page := list((in_chunk if after is None else in_chunk.filter(pk__gt=after))[:page_size]):
            for item in page:
                yield item.pk, "skipped", "", "", item
            after = page[-1].pk


def first_done(batch: Batch, op: Operation | None, count: int) -> list[tuple[str, str]]:
    """(key, the item as people name it) of the first `count` items the batch did, in key order;
    names only with its operation installed."""
    checkpoints = Checkpoint.objects.filter(batch=batch).order_by("first_key")
    rows = checkpoints.values_list("first_key", "done_keys")[:count]  # each did one item at least
    done = (pk for first, keys in rows for start, end in decode(first, bytes(keys)) for pk in range(start, end + 1))
    pks = list(islice(done, count))
    if op is None:
        return [(str(pk), "") for pk in pks]
    present = _present_items(op, batch.params, pks)
    return [(op.item_key(present[pk]), op.item_label(present[pk])) if pk in present else (str(pk), GONE) for pk in pks]


def _present_items(op: Operation, params: Mapping[str, Any], pks: list[int]) -> dict[int, Model]:
    """The items with these keys that still exist, whether or not the operation's `items()` still
    lists them, loaded as `items()` loads them (its select_related) for their labels."""
    if not pks:
        return {}
    try:
        listed = op.items(params)
    except Exception:  # e.g. a lookup of the scope's object, which was deleted: keys only
        return {}
    found = listed.model._base_manager.filter(pk__in=pks)
    found.query.select_related = listed.query.select_related
    return {item.pk: item for item in found}


def _scope_gone(batch: Batch, op: Operation) -> bool:
    try:
        op.clean_params(op.parse_params(batch.params))  # the operation's own check that its scope exists
    except ValidationError:
        return True
    return False


def _unlisted(batch: Batch, listed_done: int, scope_gone: bool, listed_skipped: int) -> Iterator[Row]:
    """Rows for the items that cannot be listed one by one, with how many and why."""
    unrecorded = batch.done_count - listed_done
    if unrecorded > 0:
        why = "done before this version of the app recorded the items each checkpoint did"
        yield "", "done", f"{_items(unrecorded)} not listed one by one: {why}.", ""
    if scope_gone and batch.skipped_count:
        where = batch.scope_label or batch.scope_key
        why = f"the batch's scope ({where}) no longer exists"
        yield "", "skipped", f"{_items(batch.skipped_count)} not listed one by one: {why}.", ""
    elif (vanished := batch.skipped_count - listed_skipped) > 0:
        # Planned, but gone (deleted, or no longer among the operation's items: an admin action's
        # rows no longer matching its list's filters) when their chunk reached them: counted as
        # skipped then; their keys were not kept.
        why = "deleted, or no longer among the batch's items, by the time their turn came"
        yield "", "skipped", f"{_items(vanished)} not listed one by one: {why}.", ""


def _items(count: int) -> str:
    return f"{count:,} item{'s' if count != 1 else ''}"
