"""The project's ASGI application: plain Django. The gateway is a view of the URLconf (shop/urls.py),
so sessions, CSRF, authentication and CORS run before it. Run it with uvicorn (from this directory):

    uvicorn shop.asgi:application --port 8000

Django sends no lifespan events and nothing here needs them: stores and clients connect on first use,
and the request log flushes at exit.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
application = get_asgi_application()
