from django.urls import path
from renders import views

urlpatterns = [
    path("renders/", views.start_render),
    path("renders/<str:workflow_id>/cancel/", views.cancel_render),
    path("batches/<str:batch_id>/cancel/", views.cancel_batch_view),
]
