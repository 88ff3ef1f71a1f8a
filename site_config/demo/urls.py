from django.urls import path

from . import views

app_name = "demo"
urlpatterns = [
    path("", views.event_list, name="event_list"),
    path("events/<int:pk>/", views.event_detail, name="event_detail"),
    path("events/<int:pk>/tickets/", views.event_tickets, name="event_tickets"),
]
