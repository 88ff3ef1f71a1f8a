"""The JSON API, mounted where the site's URLconf puts `api.urls` (site_config: /api/): schema at
openapi.json, interactive docs at docs under it."""

from . import errors
from .auth import API_AUTH
from .openapi import BatchesAPI
from .views import operations_router, router

api = BatchesAPI(
    title="Bulk operations API",
    version="1.0.0",
    description=(
        "Start long bulk operations and follow them. POST /api/batches answers at once with 202 and a "
        "Location to poll; one batch per scope runs at a time (409 names it). Authenticate with "
        "`Authorization: Bearer <token>` (tokens are created in the admin) or a session with CSRF."
    ),
    auth=API_AUTH,
    urls_namespace="api",
)
errors.install(api)
api.add_router("", router)
api.add_router("", operations_router)
