"""The redact section of the configuration: what it accepts, and the errors that say what to fix."""

from __future__ import annotations

import pytest

from asgi_aigw.config import ConfigError, parse_config
from asgi_aigw.redact import RedactConfig


def test_defaults_pseudonymize_the_default_entities() -> None:
    config = RedactConfig()
    assert config.action_for("EMAIL_ADDRESS") == "pseudonymize"
    assert "PERSON" in config.scanned_entities()


def test_allowed_entities_are_not_looked_for_and_custom_entities_are() -> None:
    config = RedactConfig(
        actions={"IP_ADDRESS": "allow"},
        recognizers=[{"name": "emp", "entity": "EMPLOYEE_ID", "patterns": [{"regex": r"EMP-\d+"}]}],  # type: ignore[list-item]
    )
    assert "IP_ADDRESS" not in config.scanned_entities()
    assert "EMPLOYEE_ID" in config.scanned_entities()


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"actions": {"EMAIL_ADDRESS": "hide"}}, "redact.actions.EMAIL_ADDRESS"),
        ({"entities": ["email"]}, "redact.entities"),
        (
            {"recognizers": [{"name": "x", "entity": "X_ID", "patterns": [{"regex": "(unclosed"}]}]},
            "not a valid regular expression",
        ),
        ({"mask_format": "<{value}>"}, "mask_format may only use"),
        ({"unknown_option": 1}, "redact.unknown_option"),
    ],
)
def test_bad_sections_are_refused_with_the_reason(section: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"redact": section})
    assert complaint in str(caught.value)


def test_the_gateway_config_carries_the_section() -> None:
    assert parse_config({}).redact is None
    config = parse_config({"redact": {"regex_only": True, "actions": {"US_SSN": "block"}}})
    assert config.redact is not None
    assert config.redact.action_for("US_SSN") == "block"
