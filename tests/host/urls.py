from django.urls import include, path

from . import views

urlpatterns = [
    path("shop/events/<int:pk>/", views.event_page, name="host_event"),
    path("jobs/", include("batches.web.urls")),  # the panel's views, wherever the host mounts them
    path("demo/", include("site_config.demo.urls")),  # the operation's own pages (its scope_url)
]
