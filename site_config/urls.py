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
