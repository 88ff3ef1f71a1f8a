"""The page contract: what a host's page loads to show batch panels.

    {% load batches %}
    {% batches_assets %}                                   in the page's <head>
    {% batch_panel "archive_orders" shop_id=shop.pk %}     where the panel goes (or params=a_dict)
    {% batch_title "archive_orders" shop_id=shop.pk %}     optional: the tab title while it runs

The panel carries the rest itself (its CSRF header, its request timeout); the script creates the
confirmation dialog and the live region it needs. The library also gives the filters the panel
uses for numbers and times (`when`, `clock`, `thousands`, `duration`, ...).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from ..panel import PANEL_TEMPLATE, page_panel
from . import batch_tags

register = template.Library()
register.filters.update(batch_tags.register.filters)

ASSETS_TEMPLATE = "batches/_assets.html"
TITLE_TEMPLATE = "batches/_title_text.html"


@register.simple_tag(takes_context=True)
def batches_assets(context: template.Context, htmx: bool = True) -> SafeString:
    """The panel's stylesheet and script, and htmx (django-htmx's copy) unless `htmx=False`: for
    a page that loads htmx 2 itself, before this tag."""
    assets = {"htmx": htmx, "csp_nonce": context.get("csp_nonce")}
    return render_to_string(ASSETS_TEMPLATE, assets)


def _request(context: template.Context) -> HttpRequest:
    request = context.get("request")
    if request is None:
        raise ImproperlyConfigured(
            "The batch panel needs the request in its template's context: add "
            '"django.template.context_processors.request" to TEMPLATES[...]["OPTIONS"]["context_processors"].'
        )
    return request


def _params(params: dict[str, Any] | None, named: dict[str, Any]) -> dict[str, Any]:
    return {**(params or {}), **named}


@register.simple_tag(takes_context=True)
def batch_panel(context: template.Context, operation: str, params: dict[str, Any] | None = None, **named: Any) -> str:
    """The panel of `operation` on the scope its params name: its start button, and the scope's
    batch live. Nothing for someone who may not act there (the operation's `may_act`)."""
    request = _request(context)
    panel = page_panel(request, operation, _params(params, named))
    return render_to_string(PANEL_TEMPLATE, panel, request=request) if panel is not None else ""


@register.simple_tag(takes_context=True)
def batch_title(context: template.Context, operation: str, params: dict[str, Any] | None = None, **named: Any) -> str:
    """The tab title the panel keeps while its batch runs ("47% · Archive orders · Shop 3"), for
    the page's <title>; empty for someone who may not act there."""
    request = _request(context)
    panel = page_panel(request, operation, _params(params, named))
    if panel is None:
        return ""
    return mark_safe(render_to_string(TITLE_TEMPLATE, panel, request=request).strip())  # escaped by the template
