"""A refusal or error for people: a page in the host's layout (batches/problem.html) with a way back,
or, for an htmx request, a fragment (batches/_problem.html: one sentence and one link, `data-problem`
on its root) that the panel's script (batches.js) shows in the panel that asked. The web UI's refusals
use it; a site may use it for its own error pages, with its own words for the way back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

PAGE_TEMPLATE = "batches/problem.html"
FRAGMENT_TEMPLATE = "batches/_problem.html"
# Any host has a home page; what is on it is the host's to say (the site says "Back to the events").
HOME = ("/", "Back to the home page")


@dataclass(frozen=True)
class Problem:
    """What went wrong, for people. `sentence` and the first link make the fragment; the page shows
    `title` as its heading, `message`, and every link."""

    code: str
    status: int
    title: str
    message: str
    sentence: str
    links: tuple[tuple[str, str], ...] = field(default=(HOME,))


def wants_fragment(request: HttpRequest) -> bool:
    # The header, not request.htmx: handlers may run before django-htmx's middleware has.
    return request.headers.get("HX-Request") == "true"


def answer(request: HttpRequest, problem: Problem, *, headers: dict[str, str] | None = None) -> HttpResponse:
    template = FRAGMENT_TEMPLATE if wants_fragment(request) else PAGE_TEMPLATE
    response = render(request, template, {"problem": problem}, status=problem.status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
