from django.contrib import admin
from django.urls import include, path

from batches.api.urls import api

from .favicon import favicon

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", api.urls),
    path("batches/", include("batches.web.urls")),
    path("", include("site_config.demo.urls")),
    path("favicon.ico", favicon, name="favicon"),
]

# Error pages in the site's layout, fragments for htmx requests (site_config/error_pages.py).
handler400 = "site_config.error_pages.bad_request"
handler403 = "site_config.error_pages.permission_denied"
handler404 = "site_config.error_pages.page_not_found"
handler500 = "site_config.error_pages.server_error"
