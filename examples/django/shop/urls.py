from django.urls import include, path

from asgi_aigw.integrations.django import gateway_urls

from . import views
from .gateway import endpoint, identity

urlpatterns = [
    path("", views.index),
    path("login/", views.login_view),
    path("ask/", views.ask),
    path("ask/stream/", views.ask_stream),
    # The gateway's OpenAI API at /ai/v1/..., after the middleware in settings.MIDDLEWARE
    path("ai/", include(gateway_urls(endpoint, identity=identity))),
]
