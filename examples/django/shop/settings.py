"""Settings of the example project: users and sessions in SQLite, the gateway served at /ai/ by the
URLconf, after the project's own middleware (CORS, sessions, CSRF, authentication)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# An example's key: set DJANGO_SECRET_KEY for anything that is not a demo on your own machine.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "shop",
]
# --8<-- [start:middleware]
# The project's own middleware runs before every view, the gateway's included.
MIDDLEWARE = [
    "shop.cors.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# --8<-- [end:middleware]
ROOT_URLCONF = "shop.urls"
# Relative to the directory the server runs in (DJANGO_DB to put it elsewhere).
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DJANGO_DB", "db.sqlite3")}
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Pages of these origins may call the API (and /ai/) from the browser: shop/cors.py.
CORS_ALLOWED_ORIGINS = [
    o for o in os.environ.get("CORS_ALLOWED_ORIGINS", "http://localhost:3000").split(",") if o
]

# The gateway's configuration, read by shop/gateway.py.
AIGW_CONFIG = os.environ.get("AIGW_CONFIG", str(BASE_DIR / "gateway.yaml"))
GATEWAY_MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")
