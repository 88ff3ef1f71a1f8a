"""The demo's pages: its events and their tickets, for those with the demo's permission only.

A ticket's code is what gets someone in, so a signed-in user without the permission sees no
event (the list says why) and gets 404 for an event's page and its tickets, as for a batch that
is not theirs to see."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from batches.operations import get_operation

from .models import Event

TICKETS_SHOWN = 10


def _may_see_events(request: HttpRequest) -> bool:
    return get_operation("reissue_tickets").may_see_all(request.user)


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    may_see = _may_see_events(request)
    events = Event.objects.annotate(ticket_count=Count("tickets")) if may_see else Event.objects.none()
    return render(request, "demo/event_list.html", {"events": events, "may_see_events": may_see})


@login_required
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if not _may_see_events(request):
        raise Http404
    event = get_object_or_404(Event.objects.annotate(ticket_count=Count("tickets")), pk=pk)
    # The page shows the operation's panel ({% batch_panel %}) to those who may reissue.
    may_reissue = get_operation("reissue_tickets").may_act(request.user, {"event_id": event.pk})
    context = {"event": event, "tickets": event.tickets.all()[:TICKETS_SHOWN], "may_reissue": may_reissue}
    return render(request, "demo/event_detail.html", context)


@login_required
@require_GET
def event_tickets(request: HttpRequest, pk: int) -> HttpResponse:
    """The tickets table alone: the event page swaps it in when a batch on it ends."""
    if not _may_see_events(request):
        raise Http404
    event = get_object_or_404(Event, pk=pk)
    return render(request, "demo/_tickets.html", {"event": event, "tickets": event.tickets.all()[:TICKETS_SHOWN]})
