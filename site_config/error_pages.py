"""Error answers for people: a page in the site's layout with a way back, or, for an htmx request,
a fragment (one sentence and one link, `data-problem` on its root) that the panel's script (batches.js) shows in
the panel that asked, keeping the panel's last figures (batches/web/problems.py draws both).

Django's handler400/403/404/500 (site_config/urls.py) and CSRF_FAILURE_VIEW end here, and so do
the web UI's 401 for a request whose session is gone (SignedOutAnswers) and its 429s.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware import csrf
from django.shortcuts import resolve_url
from django.template import loader
from django.utils.http import url_has_allowed_host_and_scheme

from batches.web.problems import FRAGMENT_TEMPLATE, PAGE_TEMPLATE, Problem, answer, wants_fragment

# The way back on the site's error pages: its home page lists the events.
HOME = ("/", "Back to the events")


def page_the_person_is_on(request: HttpRequest) -> str:
    """The address of the page the request came from (htmx names it; a form post has its
    Referer), if it is one of ours; else the home page."""
    for candidate in (request.headers.get("HX-Current-URL"), request.headers.get("Referer")):
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            parts = urlsplit(candidate)
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return answer(
        request,
        Problem(
            "bad-request",
            400,
            "Bad request",
            "The server could not understand this request. Go back and try again.",
            "The server could not understand this request.",
            links=(HOME,),
        ),
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return answer(
        request,
        Problem(
            "forbidden",
            403,
            "Not allowed",
            "Your account may not see or do this. If you think it should, ask an administrator.",
            "Your account may not do this.",
            links=(HOME,),
        ),
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return answer(
        request,
        Problem(
            "not-found",
            404,
            "Page not found",
            "There is nothing at this address: the link may be mistyped, or what it pointed to is gone.",
            "This is no longer here:",
            links=((page_the_person_is_on(request), "reload the page"),) if wants_fragment(request) else (HOME,),
        ),
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """Rendered without the request's context processors: no session, no user, no query, so the
    page renders with the database down (often why there is a 500)."""
    problem = Problem(
        "server-error",
        500,
        "Something went wrong",
        "The server could not answer this request. It has been logged; try again in a moment.",
        "Something went wrong on the server; try again in a moment.",
        links=(HOME,),
    )
    template = FRAGMENT_TEMPLATE if wants_fragment(request) else PAGE_TEMPLATE
    return HttpResponse(loader.get_template(template).render({"problem": problem}), status=500)


# Django's reasons (django.middleware.csrf.REASON_*), in plain words.
CSRF_REASONS: dict[str, str] = {
    csrf.REASON_NO_CSRF_COOKIE: (
        "Your browser did not send the cookie this form needs. Allow cookies for this site, then reload "
        "the page and try again."
    ),
    csrf.REASON_CSRF_TOKEN_MISSING: ("The form was sent without its security token. Reload the page and try again."),
    csrf.REASON_BAD_ORIGIN.split("%")[0]: (
        "The form was sent from another site or address than this one. Open this site's own page and try again."
    ),
    csrf.REASON_NO_REFERER: (
        "Your browser did not say which page the form came from, which this site needs over HTTPS. "
        "Reload the page and try again."
    ),
    csrf.REASON_BAD_REFERER.split("%")[0]: (
        "The form was sent from another site or address than this one. Open this site's own page and try again."
    ),
    csrf.REASON_INSECURE_REFERER: (
        "The form was sent from a page without HTTPS. Open this site's HTTPS address and try again."
    ),
}
CSRF_STALE = (
    "The page was loaded before you logged in or out (perhaps in another tab), so the form it sent "
    "is no longer valid. Reload it and try again: nothing was changed."
)


def csrf_reason(reason: str) -> str:
    """`reason` is Django's sentence; the token's own failures ("CSRF token from POST incorrect.")
    all mean a page older than the session."""
    for known, words in CSRF_REASONS.items():
        if reason.startswith(known):
            return words
    return CSRF_STALE


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: "out of date: reload it", with the page to reload."""
    return answer(
        request,
        Problem(
            "out-of-date",
            403,
            "This page is out of date",
            csrf_reason(reason),
            "This page is out of date:",
            links=((page_the_person_is_on(request), "reload it"), HOME),
        ),
    )


def too_many_requests(request: HttpRequest, message: str, retry_after: int, *, title: str) -> HttpResponse:
    return answer(
        request,
        Problem("too-many", 429, title, message, message, links=(HOME,)),
        headers={"Retry-After": str(retry_after)},
    )


def signed_out(request: HttpRequest) -> HttpResponse:
    """401 for an htmx request whose session is gone: a sentence and a link to log in that comes
    back to the page the person is on, never the login page inside their panel."""
    login = resolve_url(settings.LOGIN_URL) + "?" + urlencode({"next": page_the_person_is_on(request)})
    match = request.resolver_match
    polling_a_batch = match is not None and match.view_name == "batches:progress"
    sentence = "You were signed out." + (" The batch keeps running." if polling_a_batch else "")
    problem = Problem(
        "signed-out",
        401,
        "You were signed out",
        sentence,
        sentence,
        links=((login, "Log in again"),),
    )
    return answer(request, problem)


class SignedOutAnswers:
    """An htmx request that login_required turns away gets `signed_out` (401) instead of a redirect
    to the login page, which the browser would follow and htmx swap into the panel."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if wants_fragment(request) and response.status_code == 302 and self._to_login(response):
            return signed_out(request)
        return response

    @staticmethod
    def _to_login(response: HttpResponse) -> bool:
        return urlsplit(response.get("Location", "")).path == resolve_url(settings.LOGIN_URL)
