"""A store URL as error messages and logs may show it (its password and secret parameters hidden), and
the true/false values its query options take."""

from __future__ import annotations

import re

# query parameters that carry a secret (``sentinel_password``, ``password``, ``token``, ...)
_SECRET_PARAM = re.compile(r"([?&][^=&#]*(?:password|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)


def hide_password(url: str) -> str:
    """``url`` with the password of its user part and its secret query parameters as ``***``.

    ``redis+sentinel://:pw@h1,h2/mymaster?sentinel_password=s`` gives
    ``redis+sentinel://:***@h1,h2/mymaster?sentinel_password=***``. A password may hold ``/`` or ``@``
    (unencoded, as some configurations have it): everything up to the last ``@`` is hidden.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_PARAM.sub(r"\1***", url)
    userinfo, at, hosts = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{hosts}"
    return scheme + "://" + _SECRET_PARAM.sub(r"\1***", rest)


#: What a URL's true/false option may say (the words redis-py and clickhouse-connect accept).
_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def url_flag(value: str) -> bool | None:
    """A URL option's true/false value; ``None`` when it says neither."""
    return _FLAGS.get(value.lower())
