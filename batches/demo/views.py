from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from batches import selectors
from batches.operations import get_operation
from batches.views import panel_context

from .models import Event


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    events = Event.objects.annotate(ticket_count=Count("tickets"))
    return render(request, "demo/event_list.html", {"events": events})


@login_required
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(Event.objects.annotate(ticket_count=Count("tickets")), pk=pk)
    op = get_operation("reissue_tickets")
    params = {"event_id": event.pk}
    context = {"event": event, "tickets": event.tickets.all()[:10], "may_reissue": op.may_act(request.user, params)}
    if context["may_reissue"]:
        batch = selectors.latest_batch(op.name, op.scope(params))
        context.update(panel_context(op, params, batch))
        if batch and not batch.is_active:
            context["failure_list"] = selectors.failures(batch)[:100]
    return render(request, "demo/event_detail.html", context)
