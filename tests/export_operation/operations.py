"""The demo's export with small chunks and a pause per row, so that a 100,000-ticket export lasts long
enough for a test to kill its workers many times mid-checkpoint (tests/test_exports.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from django.db.models import QuerySet

from batches.operations import BatchContext
from site_config.demo.operations import ExportTickets


class ExportTicketsSlowly(ExportTickets):
    name = "export_tickets_slowly"
    label = "Export tickets slowly"
    chunk_size = 5000

    def handle_many(self, items: QuerySet[Any], ctx: BatchContext) -> None:
        time.sleep(items.count() * int(os.environ.get("EXPORT_ROW_DELAY_US", "0")) / 1_000_000)
