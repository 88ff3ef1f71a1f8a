from django.urls import path

from . import views

app_name = "batches"
urlpatterns = [
    path("", views.history, name="history"),
    path("start/<str:operation>/", views.start, name="start"),
    path("<int:pk>/", views.batch_detail, name="detail"),
    path("<int:pk>/progress/", views.batch_progress, name="progress"),
    path("<int:pk>/failures/", views.batch_failures, name="failures"),
    path("<int:pk>/download/", views.download, name="download"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/retry-failed/", views.retry, name="retry"),
]
