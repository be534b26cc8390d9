"""The project's ASGI application: Django, with the gateway's router mounted at /ai/ and the gateway's
middlewares around both. Run it with uvicorn (from this directory):

    uvicorn shop.asgi:application --port 8000

Django sends no lifespan events and nothing here needs them: stores and clients connect on first use,
and the request log flushes at exit.
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
django_app = get_asgi_application()

from asgi_aigw import ProviderRouter, load_config, mount_router  # noqa: E402
from asgi_aigw.budget import BudgetMiddleware  # noqa: E402
from asgi_aigw.cache import SemanticCacheMiddleware  # noqa: E402
from asgi_aigw.logs import RequestLogMiddleware  # noqa: E402
from asgi_aigw.redact import RedactMiddleware  # noqa: E402
from asgi_aigw.tenant import TenantMiddleware  # noqa: E402

config = load_config(settings.AIGW_CONFIG)

# Requests under /ai/ go to the router, everything else to Django.
app = mount_router(django_app, ProviderRouter(config.router), prefix=settings.GATEWAY_PREFIX)
# Then the middlewares, innermost first: each wraps what is built so far. They act on the gateway's
# routes only (.../chat/completions, .../embeddings, .../models); Django's pages pass through.
app = SemanticCacheMiddleware(app, config=config.cache)  # sees redacted text only
app = RedactMiddleware(app, config=config.redact)
app = BudgetMiddleware(app, config=config.budget)  # outside the cache: a cache hit still counts
app = TenantMiddleware(app, config=config.tenant)  # who is asking, for the budget, cache and log
application = RequestLogMiddleware(app, config=config.log)  # outermost: sees every outcome
