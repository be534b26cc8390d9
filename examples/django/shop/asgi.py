"""The project's ASGI application: plain Django. The gateway is a view of the URLconf (shop/urls.py),
so sessions, CSRF, authentication and CORS run before it. Run it with uvicorn (from this directory):

    uvicorn shop.asgi:application --port 8000

Django speaks no lifespan; ``WithGatewayLifespan`` answers it for the gateway, so when uvicorn stops
(Ctrl+C or a process manager's SIGTERM) the request log is flushed and the upstream clients closed.
Stores and clients still connect on first use.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
django_application = get_asgi_application()

from asgi_aigw.integrations import WithGatewayLifespan  # noqa: E402

from .gateway import endpoint  # noqa: E402  (after Django is set up: it reads settings)

application = WithGatewayLifespan(django_application, endpoint)
