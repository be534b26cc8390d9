"""``package.module:attribute`` paths: resolved, or refused with the kind of failure a caller words."""

from __future__ import annotations

import json.decoder

import pytest

from asgi_aigw.kernel.dotted import DottedPathError, resolve


def test_a_path_names_a_nested_attribute() -> None:
    assert resolve("json.decoder:JSONDecoder.decode") is json.decoder.JSONDecoder.decode


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("json.decoder", "form"),
        (":JSONDecoder", "form"),
        ("no_such_module_here:thing", "import"),
        ("json.decoder:NoSuchThing", "attribute"),
    ],
)
def test_a_bad_path_says_what_failed(path: str, kind: str) -> None:
    with pytest.raises(DottedPathError) as caught:
        resolve(path)
    assert caught.value.kind == kind
    if kind == "import":
        assert isinstance(caught.value.__cause__, ModuleNotFoundError)
