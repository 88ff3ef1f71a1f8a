from django.contrib import admin
from django.urls import include, path

from batches.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", api.urls),
    path("batches/", include("batches.urls")),
    path("", include("batches.demo.urls")),
]

# Error pages in the site's layout, fragments for htmx requests (batches/error_pages.py).
handler400 = "batches.error_pages.bad_request"
handler403 = "batches.error_pages.permission_denied"
handler404 = "batches.error_pages.page_not_found"
handler500 = "batches.error_pages.server_error"
