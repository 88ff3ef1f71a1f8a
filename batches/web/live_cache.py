"""The progress poll's live figures, rendered once per change of what they show.

Every open page of a running batch polls it every second; between two checkpoints (and while a
batch is queued, paused or stalled) they all get the same fragment. Rendering it was half the
poll's own cost, so each web process keeps the last fragments it rendered, keyed by everything
the template reads: the batch's row, its condition, the viewer's staff flag, zone and language.
The template renders nothing else (no CSRF token, no messages), or it could not be shared.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone, translation

from batches.models import Batch

KEPT = 256  # fragments per process: a few KB each

_fragments: OrderedDict[Hashable, str] = OrderedDict()
_lock = threading.Lock()
_ROW = [field.attname for field in Batch._meta.concrete_fields if field.name != "params"]


def render(request: HttpRequest, template: str, context: dict[str, Any]) -> str:
    key = _key(request, template, context)
    with _lock:
        fragment = _fragments.get(key)
        if fragment is not None:
            _fragments.move_to_end(key)
            return fragment
    fragment = render_to_string(template, context, request)
    with _lock:
        _fragments[key] = fragment
        if len(_fragments) > KEPT:
            _fragments.popitem(last=False)
    return fragment


def _key(request: HttpRequest, template: str, context: dict[str, Any]) -> Hashable:
    batch: Batch = context["batch"]
    cancelled_by = batch.cancelled_by.get_username() if batch.cancelled_by_id and batch.cancelled_by else None
    op = context["op"]
    return (
        template,
        context.get("live_only", False),
        tuple(getattr(batch, name) for name in _ROW),
        cancelled_by,
        context["condition"],
        op.name,
        getattr(op, "uninstalled", False),
        bool(getattr(request.user, "is_staff", False)),
        timezone.get_current_timezone_name(),
        translation.get_language(),
    )
