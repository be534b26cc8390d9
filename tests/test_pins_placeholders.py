"""Pins for the redaction map: numbering, forgery, restoring (plain and JSON-escaped), the held tail.

Each test here kills a mutant of ``asgi_aigw/redact/placeholders.py`` that the behaviour tests let
through (``python bench/mutation.py placeholders``).
"""

from __future__ import annotations

import json

from asgi_aigw.redact.placeholders import PlaceholderMap, json_escape, placeholders_in

EMAIL = "<EMAIL_ADDRESS_1>"


def test_placeholders_are_found_in_every_string_of_a_request_keys_included() -> None:
    data = {
        "messages": [
            {"role": "user", "content": "mail <EMAIL_ADDRESS_2> or <PERSON_7>"},
            {"content": [{"type": "text", "text": "x<PHONE_NUMBER_12>y"}]},
        ],
        "<US_SSN_3>": 1,
        "n": 5,
        "flag": True,
        "tools": None,
        7: "<PERSON_99>",
    }
    assert placeholders_in(data) == {
        "<EMAIL_ADDRESS_2>",
        "<PERSON_7>",
        "<PHONE_NUMBER_12>",
        "<US_SSN_3>",
        "<PERSON_99>",
    }
    assert placeholders_in("<PERSON_1>") == {"<PERSON_1>"}
    assert placeholders_in(["no placeholder", "<person_1>", "<PERSON_>", "<PERSON_1234567>"]) == set()


def test_numbering_is_per_entity_type_from_one_and_stable_per_value() -> None:
    m = PlaceholderMap()
    assert m.placeholder("EMAIL_ADDRESS", "a@example.org") == EMAIL
    assert m.placeholder("PERSON", "Ann") == "<PERSON_1>"
    assert m.placeholder("EMAIL_ADDRESS", "b@example.org") == "<EMAIL_ADDRESS_2>"
    assert m.placeholder("EMAIL_ADDRESS", "a@example.org") == EMAIL
    # the same text as another entity type is another placeholder
    assert m.placeholder("PERSON", "a@example.org") == "<PERSON_2>"
    assert len(m) == 4
    assert m.values == {
        EMAIL: "a@example.org",
        "<PERSON_1>": "Ann",
        "<EMAIL_ADDRESS_2>": "b@example.org",
        "<PERSON_2>": "a@example.org",
    }


def test_a_placeholder_written_by_the_client_is_never_allocated() -> None:
    m = PlaceholderMap(reserved={EMAIL, "<EMAIL_ADDRESS_2>", "<EMAIL_ADDRESS_4>"})
    assert m.placeholder("EMAIL_ADDRESS", "a@example.org") == "<EMAIL_ADDRESS_3>"
    assert m.placeholder("EMAIL_ADDRESS", "b@example.org") == "<EMAIL_ADDRESS_5>"
    assert m.placeholder("PERSON", "Ann") == "<PERSON_1>"
    # so the client's own string comes back exactly as written
    assert m.restore(f"{EMAIL} <EMAIL_ADDRESS_3>") == f"{EMAIL} a@example.org"


def test_an_empty_map_is_false_and_restores_nothing() -> None:
    m = PlaceholderMap()
    assert not m
    assert len(m) == 0
    assert m.restore(f"keep {EMAIL}") == f"keep {EMAIL}"
    assert m.max_length == 0
    m.placeholder("EMAIL_ADDRESS", "a@example.org")
    assert m
    assert len(m) == 1


def test_restore_plain_and_json_escaped() -> None:
    m = PlaceholderMap()
    m.placeholder("PERSON", 'Ann "the \\ boss"')
    plain = m.restore('{"to": "<PERSON_1>"}')
    assert plain == '{"to": "Ann "the \\ boss""}'
    escaped = m.restore('{"to": "<PERSON_1>"}', escape=True)
    assert json.loads(escaped) == {"to": 'Ann "the \\ boss"'}
    assert m.restore('{"to": "<PERSON_1>", "cc": "<PERSON_1>"}', escape=True).count('\\"the') == 2
    assert m.restore("no placeholder here", escape=True) == "no placeholder here"
    assert m.restore("<PERSON_2> stays", escape=True) == "<PERSON_2> stays"


def test_json_escape_matches_a_json_encoder() -> None:
    for value in ['a "b" c', "back\\slash", "line\nbreak", "tab\t", "é ☃", "\u2028"]:
        assert json.loads(f'"{json_escape(value)}"') == value


def test_the_longest_placeholder_sets_max_length() -> None:
    m = PlaceholderMap()
    m.placeholder("EMAIL_ADDRESS", "a@example.org")
    m.placeholder("PERSON", "Ann")
    assert m.max_length == len(EMAIL)


def test_split_tail_holds_only_what_may_start_an_allocated_placeholder() -> None:
    m = PlaceholderMap()
    assert m.split_tail("hello <EMAIL_ADDR") == ("hello <EMAIL_ADDR", "")  # nothing allocated
    m.placeholder("EMAIL_ADDRESS", "a@example.org")
    assert m.split_tail("hello <EMAIL_ADDR") == ("hello ", "<EMAIL_ADDR")
    assert m.split_tail("hello <") == ("hello ", "<")
    assert m.split_tail("a<EM") == ("a", "<EM")  # shorter than a placeholder
    # the longest possible tail (the whole placeholder but its last character), at the very start too
    assert m.split_tail("<EMAIL_ADDRESS_1") == ("", "<EMAIL_ADDRESS_1")
    assert m.split_tail("ab<EMAIL_ADDRESS_1") == ("ab", "<EMAIL_ADDRESS_1")
    # a whole placeholder is not held back (restore handles it), nor a "<" that starts none
    assert m.split_tail(f"x {EMAIL}") == (f"x {EMAIL}", "")
    assert m.split_tail("a < b") == ("a < b", "")
    assert m.split_tail("x <PERSON_") == ("x <PERSON_", "")
    assert m.split_tail("no angle") == ("no angle", "")
    # only the last "<" counts: an earlier one that starts a placeholder is not a tail
    assert m.split_tail("<EMAIL_ADDRESS_1> <EM") == ("<EMAIL_ADDRESS_1> ", "<EM")
    # a new placeholder widens what is held
    m.placeholder("PERSON", "Ann")
    assert m.split_tail("x <PERSON_") == ("x ", "<PERSON_")
