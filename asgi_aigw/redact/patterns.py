"""Regex-only PII analysis without importing Presidio, and so without spaCy.

``import presidio_analyzer`` imports spaCy (about 60 MB per worker) even when no NER model is used:
its NLP-engine modules import spaCy's types at module level. With ``redact.regex_only`` and the
entities below, the recognizers run here instead: the same patterns, validations, context words,
scores and de-duplication as Presidio's predefined recognizers for English (as the registry
configures them), and the same engine steps (context enhancement, threshold, de-duplication, allow
list). ``tests/test_redact_patterns.py`` holds the two to identical findings.

Any other entity, another language, or an injected analyzer goes through Presidio as before.

The patterns, context words and scores are Presidio's (github.com/microsoft/presidio, MIT licence,
Copyright (c) Microsoft Corporation).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import runpy
import string
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import groupby
from pathlib import Path
from typing import Any, NamedTuple

from .config import RedactConfig
from .engine import NER_ENTITIES, phone_windows, words_before

logger = logging.getLogger("asgi_aigw.redact")

#: Presidio's regex flags for pattern recognizers (its registry's ``global_regex_flags``: 26).
_FLAGS_NAME = ("DOTALL", "MULTILINE", "IGNORECASE")
#: Presidio's time limit for one pattern over one text (``REGEX_TIMEOUT_SECONDS``).
REGEX_TIMEOUT = int(os.environ.get("REGEX_TIMEOUT_SECONDS", 60))

#: Entities whose Presidio recognizers are reproduced here.
OWN_ENTITIES = frozenset(
    {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"}
)

# Presidio's context-enhancer defaults (LemmaContextAwareEnhancer).
_SIMILARITY_FACTOR = 0.35
_MIN_SCORE_WITH_CONTEXT = 0.4
_PREFIX_COUNT = 5
_PHONE_SCORE = 0.4


def _regex() -> Any:
    # Presidio matches with `regex`, not `re` (Unicode classes and case folding differ slightly)
    return importlib.import_module("regex")


def _flags() -> int:
    module = _regex()
    flags = 0
    for name in _FLAGS_NAME:
        flags |= getattr(module, name)
    return flags


class Result:
    """A finding, compared and hashed as Presidio's ``RecognizerResult`` is (type, span, score)."""

    __slots__ = ("end", "entity_type", "recognizer", "score", "start")

    def __init__(self, entity_type: str, start: int, end: int, score: float, recognizer: Recognizer) -> None:
        self.entity_type = entity_type
        self.start = start
        self.end = end
        self.score = score
        self.recognizer = recognizer

    def _key(self) -> tuple[int, int, float, str]:
        return (self.start, self.end, self.score, self.entity_type)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Result) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Result({self.entity_type}, {self.start}, {self.end}, {self.score})"


def remove_duplicates(results: Iterable[Result]) -> list[Result]:
    """Presidio's ``EntityRecognizer.remove_duplicates``: drop zero scores, exact duplicates, and
    results contained in a same-type result scoring at least as high."""
    ordered = sorted(set(results), key=lambda r: (r.entity_type, r.start, -(r.end - r.start), -r.score))
    kept: list[Result] = []
    for _, group in groupby(ordered, key=lambda r: r.entity_type):
        active: list[Result] = []
        for result in group:
            if result.score == 0:
                continue
            active = [other for other in active if other.end >= result.start]
            if any(
                result.start >= o.start and result.end <= o.end and result.score <= o.score for o in active
            ):
                continue
            kept.append(result)
            active.append(result)
    return sorted(kept, key=lambda r: (-r.score, r.start, -(r.end - r.start)))


class Pattern(NamedTuple):
    name: str
    regex: str
    score: float


class Recognizer:
    """Presidio's ``PatternRecognizer``: each pattern's matches, validated, then de-duplicated."""

    def __init__(
        self, name: str, entity: str, patterns: list[Pattern], context: list[str], flags: int | None = None
    ) -> None:
        self.name = name
        self.supported_entities = [entity]
        self.context = context
        self.flags = _flags() if flags is None else flags
        self._compiled = [(p, _regex().compile(p.regex, flags=self.flags)) for p in patterns]

    def validate(self, value: str) -> bool | None:
        return None

    def invalidate(self, value: str) -> bool | None:
        return None

    def analyze(self, text: str) -> list[Result]:
        results: list[Result] = []
        entity = self.supported_entities[0]
        for pattern, compiled in self._compiled:
            try:
                for match in compiled.finditer(text, timeout=REGEX_TIMEOUT):
                    start, end = match.span()
                    if start == end:
                        continue
                    value = text[start:end]
                    score = pattern.score
                    valid = self.validate(value)
                    if valid is not None:
                        score = 1.0 if valid else 0.0
                    if self.invalidate(value):
                        score = 0.0
                    if score > 0:
                        results.append(Result(entity, start, end, score, self))
            except TimeoutError:
                logger.warning(
                    "Regex pattern %r timed out after %s seconds, skipped.", pattern.name, REGEX_TIMEOUT
                )
        return remove_duplicates(results)


def _luhn(value: str) -> bool:
    digits = [int(d) for d in value]
    total = sum(digits[-1::-2])
    for digit in digits[-2::-2]:
        total += sum(int(d) for d in str(digit * 2))
    return total % 10 == 0


class CreditCardRecognizer(Recognizer):
    def __init__(self) -> None:
        super().__init__(
            "CreditCardRecognizer",
            "CREDIT_CARD",
            [
                Pattern(
                    "All Credit Cards (weak)",
                    r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))[- ]?"
                    r"(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b",
                    0.3,
                )
            ],
            [
                *("credit", "card", "visa", "mastercard", "cc", "amex", "discover", "jcb", "diners"),
                *("maestro", "instapayment"),
            ],
        )

    def validate(self, value: str) -> bool | None:
        return _luhn(value.replace("-", "").replace(" ", ""))


class UsSsnRecognizer(Recognizer):
    def __init__(self) -> None:
        super().__init__(
            "UsSsnRecognizer",
            "US_SSN",
            [
                Pattern("SSN1 (very weak)", r"\b([0-9]{5})-([0-9]{4})\b", 0.05),
                Pattern("SSN2 (very weak)", r"\b([0-9]{3})-([0-9]{6})\b", 0.05),
                Pattern("SSN3 (very weak)", r"\b(([0-9]{3})-([0-9]{2})-([0-9]{4}))\b", 0.05),
                Pattern("SSN4 (very weak)", r"\b[0-9]{9}\b", 0.05),
                Pattern("SSN5 (medium)", r"\b([0-9]{3})[- .]([0-9]{2})[- .]([0-9]{4})\b", 0.5),
            ],
            ["social", "security", "ssn", "ssns", "ssid"],
        )

    def invalidate(self, value: str) -> bool | None:
        delimiters: dict[str, int] = defaultdict(int)
        for char in value:
            if char in (".", "-", " "):
                delimiters[char] += 1
        if len(delimiters) > 1:
            return True
        digits = "".join(c for c in value if c.isdigit())
        return (
            all(digits[0] == c for c in digits)
            or digits[3:5] == "00"
            or digits[5:] == "0000"
            or digits[:3] in ("000", "666")
            or digits in ("123456789", "987654320", "078051120")
        )


class EmailRecognizer(Recognizer):
    def __init__(self, extract: Callable[[str], Any]) -> None:
        super().__init__(
            "EmailRecognizer",
            "EMAIL_ADDRESS",
            [
                Pattern(
                    "Email (Medium)",
                    r"\b((([!#$%&'*+\-/=?^_`{|}~\w])|([!#$%&'*+\-/=?^_`{|}~\w][!#$%&'*+\-/=?^_`{|}~\.\w]{0,}"
                    r"[!#$%&'*+\-/=?^_`{|}~\w]))[@]\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+)\b",
                    0.5,
                )
            ],
            ["email"],
        )
        self._extract = extract

    def validate(self, value: str) -> bool | None:
        return bool(self._extract(value).fqdn != "")


class IpRecognizer(Recognizer):
    def __init__(self) -> None:
        super().__init__(
            "IpRecognizer",
            "IP_ADDRESS",
            [
                Pattern(
                    "IPv4_mapped",
                    r"(?<![\w:])::(?:ffff(?::0{1,4})?:)?(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}"
                    r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?\b",
                    0.6,
                ),
                Pattern(
                    "IPv4_embedded",
                    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){1,5}:(?:[0-9A-Fa-f]{1,4}:){0,4}|(?:[0-9A-Fa-f]{1,4}:){6})"
                    r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
                    r"(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?\b",
                    0.6,
                ),
                Pattern(
                    "IPv4",
                    r"\b(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\."
                    r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
                    r"(?:/(?:[0-2]?\d|3[0-2]))?\b",
                    0.6,
                ),
                Pattern(
                    "IPv6",
                    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:"
                    r"|:(?::[0-9A-Fa-f]{1,4}){1,7}|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}"
                    r"|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}"
                    r"|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}"
                    r"|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}"
                    r"|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}"
                    r"|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?::[0-9A-Fa-f]{1,4}){1,6})"
                    r"(?:%[0-9a-zA-Z]+)?(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?(?![\w:]|\.\d)",
                    0.6,
                ),
                Pattern("IPv6_unspecified", r"(?<![\w:])::(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?(?![\w:])", 0.1),
            ],
            ["ip", "ipv4", "ipv6"],
        )

    def invalidate(self, value: str) -> bool | None:
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            return True
        return None


class IbanRecognizer(Recognizer):
    """Presidio's IbanRecognizer: the longest of three nested spans that validates."""

    _LETTERS = {ord(d): str(i) for i, d in enumerate(string.digits + string.ascii_uppercase)}

    def __init__(self, per_country: dict[str, str]) -> None:
        super().__init__(
            "IbanRecognizer",
            "IBAN_CODE",
            [
                Pattern(
                    "IBAN Generic",
                    r"(?<![A-Z0-9])([A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2,6})"
                    r"((?:[ -]?[A-Z0-9]{4})?)((?:[ -]?[A-Z0-9]{1,3})?)(?![A-Z0-9])",
                    0.5,
                )
            ],
            ["iban", "bank", "transaction"],
        )
        regex = _regex()
        self._country = {
            code: regex.compile(rx, flags=regex.DOTALL | regex.MULTILINE) for code, rx in per_country.items()
        }

    def _valid_format(self, iban: str) -> bool:
        compiled = self._country.get(iban[:2])
        return compiled is not None and compiled.match(iban, timeout=REGEX_TIMEOUT) is not None

    def validate(self, value: str) -> bool | None:
        try:
            iban = value.replace("-", "").replace(" ", "")
            moved = (iban[:2] + "00" + iban[4:]).upper()
            number = (moved[4:] + moved[:4]).translate(self._LETTERS)
            if f"{98 - (int(number) % 97):0>2}" != iban[2:4]:
                return False
            if self._valid_format(iban):
                return True
            return None if self._valid_format(iban.upper()) else False
        except (ValueError, TimeoutError):
            return False

    def analyze(self, text: str) -> list[Result]:
        results: list[Result] = []
        for pattern, compiled in self._compiled:
            try:
                for match in compiled.finditer(text, timeout=REGEX_TIMEOUT):
                    for group in reversed(range(1, len(match.groups()) + 1)):
                        start = match.start()
                        end = match.span(group)[1] if match.span(group)[1] > 0 else match.end()
                        if start == end:
                            continue
                        score = pattern.score
                        valid = self.validate(text[start:end])
                        if valid is not None:
                            score = 1.0 if valid else 0.0
                        if score > 0:
                            results.append(Result("IBAN_CODE", start, end, score, self))
                            break
            except TimeoutError:
                logger.warning(
                    "Regex pattern %r timed out after %s seconds, skipped.", pattern.name, REGEX_TIMEOUT
                )
        return results


class PhoneRecognizer(Recognizer):
    """Presidio's PhoneRecognizer (python-phonenumbers), run per digit run as the tuned engine's
    ``WindowedPhoneRecognizer`` does."""

    def __init__(self, regions: list[str], leniency: int = 1) -> None:
        self.name = "PhoneRecognizer"
        self.supported_entities = ["PHONE_NUMBER"]
        self.context = ["phone", "number", "telephone", "cell", "cellphone", "mobile", "call"]
        self.regions = tuple(regions)
        self.leniency = leniency
        self._compiled = []

    def analyze(self, text: str) -> list[Result]:
        import phonenumbers

        results: list[Result] = []
        for start, end, runs in phone_windows(text):
            window = text[start:end]
            covered: list[tuple[int, int]] = []
            for region in self.regions:
                for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=self.leniency):
                    result = Result(
                        "PHONE_NUMBER", match.start + start, match.end + start, _PHONE_SCORE, self
                    )
                    results.append(result)
                    covered.append((result.start, result.end))
                if all(any(s <= a and b <= e for s, e in covered) for a, b in runs):
                    break
        return remove_duplicates(results)


def _package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def _data_module(package: str, relative: str) -> dict[str, Any] | None:
    path = _package_file(package, relative)
    return None if path is None else runpy.run_path(str(path))


def _stop_words() -> frozenset[str] | None:
    """spaCy's English stop words (what Presidio's context words skip), read from spaCy's data
    module without importing spaCy."""
    module = _data_module("spacy", "lang/en/stop_words.py")
    return None if module is None else frozenset(module["STOP_WORDS"])


def _iban_countries() -> dict[str, str] | None:
    module = _data_module("presidio_analyzer", "predefined_recognizers/generic/iban_patterns.py")
    return None if module is None else dict(module["regex_per_country"])


def supports(config: RedactConfig) -> bool:
    """Whether this module can stand in for Presidio under ``config``."""
    if not config.regex_only or config.language != "en":
        return False
    custom = {r.entity for r in config.recognizers}
    return set(config.scanned_entities()) <= OWN_ENTITIES | custom | NER_ENTITIES


class _Registry:
    def __init__(self, recognizers: list[Recognizer]) -> None:
        self.recognizers = recognizers


class _NoNer:
    """What the scanner's clean-text check reads from an engine's NLP engine: no NER model."""

    ner = None
    gate = False

    def __init__(self, stop_words: frozenset[str]) -> None:
        self.stop_words = stop_words


class RegexAnalyzer:
    """The subset of Presidio's ``AnalyzerEngine`` the scanner uses, for regex-only analysis."""

    def __init__(self, recognizers: list[Recognizer], stop_words: frozenset[str]) -> None:
        self.registry = _Registry(recognizers)
        self.nlp_engine = _NoNer(stop_words)
        self.stop_words = stop_words

    def analyze(
        self,
        text: str,
        language: str,
        entities: list[str] | None = None,
        score_threshold: float = 0.0,
        allow_list: list[str] | None = None,
        allow_list_match: str = "exact",
    ) -> list[Result]:
        wanted = set(entities) if entities else None
        results: list[Result] = []
        for recognizer in self.registry.recognizers:
            if wanted is None or wanted & set(recognizer.supported_entities):
                results.extend(recognizer.analyze(text))
        self._enhance(text, results)
        results = remove_duplicates(r for r in results if r.score >= score_threshold)
        if allow_list:
            results = _without_allowed(results, text, allow_list, allow_list_match)
        return results

    def _enhance(self, text: str, results: list[Result]) -> None:
        """Presidio's lemma context enhancer, as the tuned engine runs it (words read from the text)."""
        for result in results:
            context = result.recognizer.context
            if not context or result.score >= 1.0:
                continue
            words = words_before(text, result.start, self.stop_words, _PREFIX_COUNT)
            if any(word.lower() in found.lower() for word in context for found in words):
                score = max(result.score + _SIMILARITY_FACTOR, _MIN_SCORE_WITH_CONTEXT)
                result.score = min(score, 1.0)


def _without_allowed(results: list[Result], text: str, allow_list: list[str], match: str) -> list[Result]:
    if match == "regex":
        terms = [term for term in allow_list if term]
        if not terms:
            return results
        compiled = _regex().compile("|".join(terms), flags=_flags())
        kept = []
        for result in results:
            try:
                if not compiled.search(text[result.start : result.end], timeout=REGEX_TIMEOUT):
                    kept.append(result)
            except TimeoutError:
                kept.append(result)
        return kept
    return [r for r in results if text[r.start : r.end] not in allow_list]


def build_regex_analyzer(config: RedactConfig, extract: Callable[[str], Any]) -> RegexAnalyzer | None:
    """The regex-only engine for ``config``, or None when Presidio must be used (see :func:`supports`;
    also when spaCy's stop-word list or Presidio's IBAN formats are not where they are expected)."""
    if not supports(config):
        return None
    stop_words = _stop_words()
    countries = _iban_countries()
    if stop_words is None or countries is None:
        return None
    wanted = set(config.scanned_entities())
    recognizers: list[Recognizer] = []
    for entity, make in (
        ("CREDIT_CARD", CreditCardRecognizer),
        ("US_SSN", UsSsnRecognizer),
        ("EMAIL_ADDRESS", lambda: EmailRecognizer(extract)),
        ("IBAN_CODE", lambda: IbanRecognizer(countries)),
        ("IP_ADDRESS", IpRecognizer),
        ("PHONE_NUMBER", lambda: PhoneRecognizer(config.phone_regions)),
    ):
        if entity in wanted:
            recognizers.append(make())
    for custom in config.recognizers:
        recognizers.append(
            Recognizer(
                custom.name,
                custom.entity,
                [Pattern(f"{custom.name}_{i}", p.regex, p.score) for i, p in enumerate(custom.patterns)],
                custom.context,
            )
        )
    return RegexAnalyzer(recognizers, stop_words)
