"""Settings of the example project: no database, no apps, one page and two views calling the gateway."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# An example's key: set DJANGO_SECRET_KEY for anything that is not a demo on your own machine.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The gateway's configuration, read by asgi.py; the views call the gateway at GATEWAY_PREFIX.
AIGW_CONFIG = os.environ.get("AIGW_CONFIG", str(BASE_DIR / "gateway.yaml"))
GATEWAY_PREFIX = "/ai"
GATEWAY_MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")
