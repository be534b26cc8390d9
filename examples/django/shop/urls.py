from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("ask/", views.ask),
    path("ask/stream/", views.ask_stream),
]
