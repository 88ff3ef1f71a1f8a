"""The test operation: mark every record of a ledger (marks + 1, done), failing on demand."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import Count, F, QuerySet
from django.db.models.functions import Mod
from pydantic import Field

from batches.operations import BatchContext, ItemContext, ObjectId, Operation, register

from .models import Ledger, Record


class RecordRefused(Exception):
    """The expected failure: records whose number is a multiple of RECORDS_FAIL_EVERY."""


@register
class MarkRecords(Operation):
    name = "mark_records"
    label = "Mark records"
    items_name = "records"
    expected_errors = (RecordRefused,)
    item_time_limit = settings.RECORDS_ITEM_TIME_LIMIT

    class Params(Operation.Params):
        ledger_id: ObjectId = Field(description="The ledger whose records to mark.")

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if not Ledger.objects.filter(pk=params["ledger_id"]).exists():
            raise ValidationError({"ledger_id": f"There is no ledger {params['ledger_id']}."})
        return params

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"ledger:{params['ledger_id']}"

    def scope_label(self, params: Mapping[str, Any]) -> str:
        name = Ledger.objects.filter(pk=params["ledger_id"]).values_list("name", flat=True).first()
        return name or f"ledger {params['ledger_id']}"

    def may_act(self, user: AbstractBaseUser | AnonymousUser, params: Mapping[str, Any]) -> bool:
        return self.may_see_all(user)

    def may_see_all(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        return user.has_perm("testapp.mark_records")

    def item_label(self, item: Record) -> str:
        return f"Record {item.number}"

    def confirmation(self, params: Mapping[str, Any]) -> str | None:
        ledger_id = params.get("ledger_id")  # the form of a refused start may hold anything
        if not isinstance(ledger_id, int) or isinstance(ledger_id, bool):
            return None
        ledger = Ledger.objects.filter(pk=ledger_id).annotate(record_count=Count("records")).first()
        if ledger is None:
            return None
        count = ledger.record_count
        return f"Mark all {count:,} record{'s' if count != 1 else ''} of {ledger.name}?"

    def items(self, params: Mapping[str, Any]) -> QuerySet[Record]:
        return Record.objects.filter(ledger_id=params["ledger_id"])

    def handle(self, item: Record, ctx: ItemContext) -> None:
        self._work(1)
        if self._refused(item.number):
            raise RecordRefused(f"Record {item.number} is refused.")
        Record.objects.filter(pk=item.pk).update(marks=F("marks") + 1, done=True)

    def handle_many(self, items: QuerySet[Record], ctx: BatchContext) -> None:
        every = settings.RECORDS_FAIL_EVERY
        if every and items.alias(rest=Mod("number", every)).filter(rest=0).exists():
            raise RecordRefused("A record on this page is refused.")  # redone one by one
        self._work(items.update(marks=F("marks") + 1, done=True))

    @staticmethod
    def _work(records: int) -> None:
        if settings.RECORDS_ITEM_DELAY_MS:
            time.sleep(settings.RECORDS_ITEM_DELAY_MS * records / 1000)

    @staticmethod
    def _refused(number: int) -> bool:
        return bool(settings.RECORDS_FAIL_EVERY) and number % settings.RECORDS_FAIL_EVERY == 0
