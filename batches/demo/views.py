from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from batches import selectors
from batches.operations import get_operation
from batches.views import failure_rows, panel_context

from .models import Event

TICKETS_SHOWN = 10


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    events = Event.objects.annotate(ticket_count=Count("tickets"))
    return render(request, "demo/event_list.html", {"events": events})


@login_required
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(Event.objects.annotate(ticket_count=Count("tickets")), pk=pk)
    op = get_operation("reissue_tickets")
    params = {"event_id": event.pk}
    context = {
        "event": event,
        "tickets": event.tickets.all()[:TICKETS_SHOWN],
        "may_reissue": op.may_act(request.user, params),
        "scope_label": event.name,
    }
    if context["may_reissue"]:
        batch = selectors.latest_batch(op.name, op.scope(params))
        context.update(panel_context(op, params, batch))
        if batch and not batch.is_active:
            context["failure_list"] = failure_rows(op, batch)
    return render(request, "demo/event_detail.html", context)


@login_required
@require_GET
def event_tickets(request: HttpRequest, pk: int) -> HttpResponse:
    """The tickets table alone: the event page swaps it in when a batch on it ends."""
    event = get_object_or_404(Event, pk=pk)
    return render(request, "demo/_tickets.html", {"event": event, "tickets": event.tickets.all()[:TICKETS_SHOWN]})
