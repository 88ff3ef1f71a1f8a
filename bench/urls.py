"""The app's URLs, plus the cheapest page a signed-in user can poll: the floor for row 4."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_required
def signed_in(request: HttpRequest) -> HttpResponse:
    """Session and user, as every poll loads them; no batch, no template."""
    return HttpResponse(f"<p>{request.user.get_username()}</p>")


urlpatterns = [path("bench/signed-in/", signed_in), path("", include("site_config.urls"))]
