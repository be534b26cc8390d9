"""``manage.py seed_demo``: the example's two users, alice and bob (password: ``example-only``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the example's users alice and bob."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        for name in ("alice", "bob"):
            user, _ = users.objects.get_or_create(username=name)
            user.set_password("example-only")
            user.is_active = True
            user.save()
        self.stdout.write("users: alice, bob (password: example-only)")
