"""A store URL's password never appears in the error a bad URL raises (the message ends up in logs and
in a failed deployment's output): every malformed Redis Cluster/Sentinel, Redis or log sink URL is a
clear ConfigError with the password shown as ``***``."""

from __future__ import annotations

import pytest

from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.kernel.url_text import hide_password
from asgi_aigw.logs.sink_url import parse_sink_url
from asgi_aigw.stores.registry import BUDGET_STORES, KEY_STORES
from asgi_aigw.stores.resp import Endpoint

SECRET = "hunter2-not-a-real-password"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis+sentinel://:{SECRET}@h1:x/svc", "bad port ('h1:x')"),
        (f"redis+cluster://:{SECRET}@h1:99999", "bad port ('h1:99999')"),
        (f"redis+cluster://:{SECRET}@h1:0", "bad port ('h1:0')"),
        (f"redis+cluster://:{SECRET}@h1:-5", "bad port ('h1:-5')"),
        (f"redis+cluster://admin:{SECRET}@", "no nodes in 'redis+cluster://admin:***@'"),
        (f"redis+sentinel://:{SECRET}@h1/", "no service name"),
        (f"redis+cluster://:{SECRET}@h/3", "database 0 only"),
        (f"redis+cluster://:{SECRET}@h/0/1", "unexpected path"),
        (f"redis+sentinel://h/svc/x?sentinel_password={SECRET}", "bad database number ('x')"),
        (f"redis+sentinel://:{SECRET}@h/svc?db=-1", "bad database number ('-1')"),
        (f"redis+sentinel://:{SECRET}@[::1/svc", "bad address ('[::1')"),
        (f"redis+cluster://:{SECRET}@[::1]x", "bad address ('[::1]x')"),
        (f"redis+clustr://:{SECRET}@h:7000", "Unknown budget store 'redis+clustr://:***@h:7000'"),
    ],
)
def test_bad_topology_urls_are_config_errors_without_the_password(url: str, message: str) -> None:
    for registry in (BUDGET_STORES, KEY_STORES):
        with pytest.raises(ConfigError) as caught:
            registry.check(url)
        text = str(caught.value)
        assert SECRET not in text
        assert message.replace("budget", registry.kind) in text


@pytest.mark.parametrize(
    "url",
    [
        f"clickhouse://default:{SECRET}@db.internal:notaport/logs",
        f"clickhouse://default:{SECRET}@db.internal/logs?ttl_days=soon",
        f"clickhous://default:{SECRET}@db.internal/logs",
    ],
)
def test_bad_log_sink_urls_hide_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sink_url(url)
    assert SECRET not in str(caught.value)
    assert "default:***@db.internal" in str(caught.value)


def test_redis_endpoint_error_hides_the_password() -> None:
    with pytest.raises(ValueError, match=r"'http://:\*\*\*@h:1'") as caught:
        Endpoint.from_url(f"http://:{SECRET}@h:1")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+sentinel://:pw@h1,h2/mymaster?sentinel_password=s&db=1",
         "redis+sentinel://:***@h1,h2/mymaster?sentinel_password=***&db=1"),
        ("redis+cluster://user:p/a@ss@h:1", "redis+cluster://user:***@h:1"),
        ("redis+cluster://user@h:1", "redis+cluster://user@h:1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("clickhouse://u:pw@h/db?password=q&table=t", "clickhouse://u:***@h/db?password=***&table=t"),
    ],
)  # fmt: skip
def test_hide_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown
