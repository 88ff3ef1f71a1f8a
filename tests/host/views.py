from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from site_config.demo.models import Event


def event_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A host's page with a panel on it: the host passes what the panel is about, nothing else."""
    return render(request, "host/event.html", {"event": get_object_or_404(Event, pk=pk)})
