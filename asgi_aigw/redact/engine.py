"""A Presidio ``AnalyzerEngine`` tuned for the request path, built around the shared one.

Presidio as configured by default spends its time in four places (``bench/redact.py`` measures each):

1. **spaCy's whole pipeline** (tok2vec, tagger, parser, lemmatizer, NER) runs on every text although
   Presidio reads only the entities, and the lemmas for context words. Here only the ``ner``
   component runs, and only on the sentences that could hold a name (:func:`name_segments`).
2. **python-phonenumbers** runs a matcher pass per region (eight by default) over the whole text and
   parses every digit group, then its sub-groups, in each region. Here it runs per digit run, skips
   runs other recognizers own, and stops at the first region that finds the number
   (:func:`_windowed_phone_class`).
3. **Recognizers for entities nobody asked for**: only the configured entities' recognizers are
   registered, and each is skipped when its cheap necessary condition fails (:data:`PREFILTERS`).
4. **Context enhancement** deep-copies every result and needs every token lemmatised: the enhancer
   here scores in place and reads the words before each finding from the text
   (:func:`_in_place_enhancer_class`).

The shared engine (``asgi_aigw.runtime.pii.get_analyzer``) provides the loaded spaCy model and the
predefined recognizers; nothing of it is modified.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .config import RedactConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts

logger = logging.getLogger("asgi_aigw.redact")

#: Entities found by the NER model rather than by patterns.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "DATE_TIME", "ORGANIZATION"})

# -- phone numbers: one matcher pass per digit run, not per text ------------------------------------

# A run of at least five digits with phone punctuation between them (phonenumbers' own separators).
_DIGITS = r"[0-9\uff10-\uff19]"
_PHONE_SEP = (
    "[ \t\u00a0().\\-\u2010-\u2015\u2212\u30fc\uff0d-\uff0f/~\u2053\u223c\uff5e"
    "\\[\\]\uff08\uff09\uff3b\uff3d]"
)
_PHONE_RUN = re.compile(rf"{_DIGITS}(?:{_PHONE_SEP}{{0,4}}{_DIGITS}){{4,}}")
#: Characters around a run that phonenumbers looks at (a leading +, a bracket, a letter that
#: disqualifies the match, an extension marker).
_PHONE_MARGIN = 6


#: Any decimal digit (of any script, as ``\\d`` in the patterns below): most prompts have none, and
#: finding that out is one pass in C where each digit pattern tried a match at every character (12 µs
#: for a 40-character question, every new prompt).
_DIGIT = re.compile(r"\d")


def _with_digits(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda text: _DIGIT.search(text) is not None and compiled.search(text) is not None


_IPV4 = re.compile(r"\d\.\d{1,3}\.\d")
#: Two colons with only hex digits between them (what ``[0-9A-Fa-f]*:[0-9A-Fa-f]*:`` finds, in one pass).
_IPV6 = re.compile(r":[0-9A-Fa-f]*:")


def _ip_address(text: str) -> bool:
    if ":" in text and _IPV6.search(text) is not None:
        return True
    return "." in text and _DIGIT.search(text) is not None and _IPV4.search(text) is not None


#: A cheap necessary condition per entity: each accepts a superset of what the Presidio recognizer
#: of that entity can match, so skipping a recognizer whose condition fails loses nothing.
PREFILTERS: dict[str, Callable[[str], bool]] = {
    "EMAIL_ADDRESS": lambda text: "@" in text or "\uff20" in text,
    # 13-19 digits, optionally separated by single spaces or dashes
    "CREDIT_CARD": _with_digits(r"\d(?:[ -]?\d){12}"),
    # 9 digits, optionally separated by a space, dot or dash
    "US_SSN": _with_digits(r"\d(?:[ .-]?\d){8}"),
    # a country code and two check digits
    "IBAN_CODE": _with_digits(r"(?<=[A-Za-z]{2})\d{2}"),  # found from the digits: fewer starts
    # an IPv4 dotted quad or two colons of an IPv6 address
    "IP_ADDRESS": _ip_address,
    "PHONE_NUMBER": lambda text: _DIGIT.search(text) is not None and _PHONE_RUN.search(text) is not None,
}


def possible_entities(text: str, entities: Iterable[str]) -> list[str]:
    """The entities among ``entities`` that could be in ``text`` (those without a prefilter always)."""
    out = []
    for entity in entities:
        check = PREFILTERS.get(entity)
        if check is None or check(text):
            out.append(entity)
    return out


_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}[ ]?(?:[A-Z0-9]{4}[ ]?)*$")
_NOT_DIGIT = re.compile(r"\D")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    candidate = candidate.replace(" ", "")
    if not 15 <= len(candidate) <= 34 or not candidate.isascii() or not candidate.isalnum():
        return False
    rotated = candidate[4:] + candidate[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")


def claimed_run(text: str, start: int, end: int) -> bool:
    """Whether a digit run is certainly not a phone number: a Luhn-valid card number, the tail of a
    valid IBAN, or a US SSN written 123-45-6789 (a grouping no numbering plan uses). Their own
    recognizers report those; parsing them as phone numbers in every region was most of the phone
    recognizer's time on texts that hold them."""
    if _SSN_SHAPE.fullmatch(text, start, end):
        return True
    digits = _NOT_DIGIT.sub("", text[start:end])
    if not digits.isascii():
        return False
    international = text[max(0, start - 2) : start].strip().endswith("+")
    if 13 <= len(digits) <= 19 and _luhn(digits) and not international:
        return True
    head = _IBAN_HEAD.search(text, max(0, start - 30), start)
    if head is None:
        return False
    tail = re.match(r"[A-Z0-9 ]*", text[end : end + 8])
    return _iban_valid(head.group() + text[start:end] + (tail.group() if tail else ""))


def phone_windows(text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """The spans of ``text`` that could hold a phone number (digit runs widened by a margin and
    merged), each with the digit runs inside it."""
    windows: list[tuple[int, int, list[tuple[int, int]]]] = []
    for match in _PHONE_RUN.finditer(text):
        run = match.span()
        if claimed_run(text, *run):
            continue
        start = max(0, run[0] - _PHONE_MARGIN)
        end = min(len(text), run[1] + _PHONE_MARGIN)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end, [*windows[-1][2], run])
        else:
            windows.append((start, end, [run]))
    return windows


def _windowed_phone_class() -> type[Any]:
    import phonenumbers
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class WindowedPhoneRecognizer(PhoneRecognizer):
        """Presidio's PhoneRecognizer, run on each digit run instead of the whole text.

        Presidio runs phonenumbers' matcher over the whole text once per region, and the matcher
        parses every digit group it finds, then its sub-groups, in each region. Here it runs per
        digit run, skips runs the card and IBAN recognizers own, and stops trying regions for a run
        once one region found a number covering it.
        """

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            results: list[RecognizerResult] = []
            leniency = 1 if self.leniency is None else self.leniency
            for start, end, runs in phone_windows(text):
                window = text[start:end]
                covered: list[tuple[int, int]] = []
                for region in self.supported_regions:
                    matches = phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency)
                    for match in matches:
                        # (Presidio re-parses the match only to name its region in the explanation)
                        result = self._get_recognizer_result(  # type: ignore[no-untyped-call]
                            match, window, region, nlp_artifacts
                        )
                        result.start += start
                        result.end += start
                        results.append(result)
                        covered.append((result.start, result.end))
                    if all(any(s <= a and b <= e for s, e in covered) for a, b in runs):
                        break
            return EntityRecognizer.remove_duplicates(results)

    return WindowedPhoneRecognizer


# -- context enhancement without the deep copy and without tokens -----------------------------------

_CONTEXT_WORD = re.compile(r"[^\W_][\w:]*")
#: How far back to look for the words before a finding (five words fit easily).
_CONTEXT_REACH = 160


def _in_place_enhancer_class() -> type[Any]:
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer, LemmaContextAwareEnhancer

    class InPlaceContextEnhancer(LemmaContextAwareEnhancer):
        """Presidio's lemma context enhancer, minus its two costs.

        The stock one deep-copies every result first (they are fresh from this analysis: nobody
        else holds them) and needs the whole text tokenised and lemmatised to find the five
        words before a finding. Here those words are read from the text just before it, lower-cased
        (context words match as substrings, so "cards" still finds "card"), skipping stop words as
        Presidio does.
        """

        def __init__(self, stop_words: frozenset[str]) -> None:
            super().__init__()
            self.stop_words = stop_words

        def enhance_using_context(
            self,
            text: str,
            raw_results: list[RecognizerResult],
            nlp_artifacts: NlpArtifacts,
            recognizers: list[EntityRecognizer],
            context: list[str] | None = None,
        ) -> list[RecognizerResult]:
            if not raw_results:
                return raw_results
            by_id = {recognizer.id: recognizer for recognizer in recognizers}
            extra = [word.lower() for word in context or ()]
            for result in raw_results:
                metadata = result.recognition_metadata or {}
                recognizer = by_id.get(metadata.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
                if recognizer is None or not recognizer.context:
                    continue
                if metadata.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                    continue
                if result.score >= ContextAwareEnhancer.MAX_SCORE:
                    continue  # a checksum-validated card, IBAN or e-mail: nothing to raise
                words = self.words_before(text, result.start)
                words.extend(extra)
                found = self._find_supportive_word_in_context(
                    words, recognizer.context, self.context_matching_mode
                )
                if found:
                    score = max(
                        result.score + self.context_similarity_factor, self.min_score_with_context_similarity
                    )
                    result.score = min(score, ContextAwareEnhancer.MAX_SCORE)
                    result.analysis_explanation.set_supportive_context_word(found)
                    result.analysis_explanation.set_improved_score(result.score)
            return raw_results

        def words_before(self, text: str, start: int) -> list[str]:
            """The ``context_prefix_count`` words before ``start`` that are not stop words."""
            return words_before(text, start, self.stop_words, self.context_prefix_count)

    return InPlaceContextEnhancer


def words_before(text: str, start: int, stop_words: frozenset[str], count: int) -> list[str]:
    """The ``count`` words before ``start`` that are not stop words, lower-cased (a word with
    colons counts as its parts, as Presidio's tokenizer splits it)."""
    words: list[str] = []
    window = text[max(0, start - _CONTEXT_REACH) : start]
    for word in reversed(_CONTEXT_WORD.findall(window)):
        lowered = word.lower()
        if lowered in stop_words:
            continue
        words.extend(part for part in lowered.split(":") if part)
        if len(words) >= count:
            break
    return words


# -- NER only where a name can be -------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
_LEADING = re.compile(r"[\s\"'\u2018\u201c(\[{*#>\-\u2022\d.)]*")
#: Capitalised sentence openers that are not names (on top of the language's stop words): greetings,
#: connectives and the imperatives prompts start sentences with. No common first name is listed.
_OPENERS = frozenset(
    """hi hello hey dear thanks thank please kindly ok okay yes no sure great good note update summary
    write rewrite draft explain describe summarise summarize translate list give tell show find check
    make create generate suggest help add remove keep use fix return send reply answer compare consider
    let imagine assume given what which who whom whose when where why how is are was were do does did
    can could would should will shall may might must have has had there here this that these those it
    its my our your their his her he she we they you i also then now so but and or if although because
    after before while since as for from with without in on at by to of about into over under between
    today yesterday tomorrow subject re fw fwd regards best cheers sincerely step first second third
    finally next last example e.g i.e finish start begin include provide avoid ensure focus format
    output respond act be try read review analyse analyze classify extract convert calculate identify
    outline propose recommend rank rate ask say pretend continue stop think remember limit only always
    never each every all any some most many one two three four five using based according ignore
    produce rephrase paraphrase proofread correct improve shorten expand simplify prepare plan organise
    organize label tag sort group count estimate predict evaluate assess verify confirm validate test
    debug refactor implement build design choose select pick decide determine break split merge combine
    join map filter search look open close save load print display render call run execute install
    upgrade configure set get put post delete copy move rename define clarify
    mail email e-mail message contact forward ping""".split()  # noqa: SIM905
)
_JOIN = "\n\n"
#: Longer sentences are cut into windows this long around each hint (NER context is a few words).
_MAX_SEGMENT = 600


@functools.cache
def _name_hint() -> re.Pattern[str]:
    """A capitalised word (an upper-case letter then a lower-case one, in any script of the Basic
    Multilingual Plane), or two upper-case words in a row (JOHN SMITH). Python's ``re`` has no
    ``\\p{Lu}``: the classes are built once from ``str.isupper``/``str.islower``."""
    upper = "".join(re.escape(c) for c in map(chr, range(0x10000)) if c.isupper() and c.isalpha())
    lower = "".join(re.escape(c) for c in map(chr, range(0x10000)) if c.islower() and c.isalpha())
    return re.compile(
        rf"(?<![^\W\d_])[{upper}](?=[{lower}])|(?<![^\W\d_])[{upper}]{{2,}}[ \t]+[{upper}]{{2,}}(?!\w)"
    )


def name_segments(text: str, stop_words: frozenset[str] | set[str] = frozenset()) -> list[tuple[int, int]]:
    """The character spans of ``text`` that NER should read: the sentences that could hold a name.

    A sentence qualifies when it has a capitalised word that is not its first word, or a first word
    that is neither a stop word nor a common opener ("Please", "Hi"), or two upper-case words in a
    row. Lower-case names are not looked for: the small English model rarely finds them anyway.
    """
    hints = [m.start() for m in _name_hint().finditer(text)]
    if not hints:
        return []
    segments: list[tuple[int, int]] = []
    sentence_start = 0
    boundaries = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(text)]
    boundaries.append((len(text), len(text)))
    hint_index = 0
    for end, next_start in boundaries:
        sentence_hints = []
        while hint_index < len(hints) and hints[hint_index] < end:
            if hints[hint_index] >= sentence_start:
                sentence_hints.append(hints[hint_index])
            hint_index += 1
        if any(_is_name_hint(text, sentence_start, hint, stop_words) for hint in sentence_hints):
            _add_segment(segments, text, sentence_start, end, sentence_hints)
        sentence_start = next_start
        if hint_index >= len(hints):
            break
    return segments


def _is_name_hint(text: str, sentence_start: int, hint: int, stop_words: frozenset[str] | set[str]) -> bool:
    lead = _LEADING.match(text, sentence_start)
    first = lead.end() if lead else sentence_start
    if hint != first:
        return True
    word = _WORD.match(text, hint)
    if word is None:
        return True
    lowered = word.group().lower().rstrip("'\u2019")
    return lowered not in stop_words and lowered not in _OPENERS


def _add_segment(segments: list[tuple[int, int]], text: str, start: int, end: int, hints: list[int]) -> None:
    pieces = [(start, end)]
    if end - start > _MAX_SEGMENT:
        half = _MAX_SEGMENT // 2
        pieces = [(max(start, hint - half), min(end, hint + half)) for hint in hints]
    for piece_start, piece_end in pieces:
        if segments and piece_start <= segments[-1][1] + 1:
            segments[-1] = (segments[-1][0], max(segments[-1][1], piece_end))
        else:
            segments.append((piece_start, piece_end))


class _Entity(NamedTuple):
    """What Presidio's SpacyRecognizer reads from an entity span, with offsets in the whole text."""

    label_: str
    start_char: int
    end_char: int


def _nlp_engine_class() -> type[Any]:
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

    class RedactNlpEngine(NlpEngine):
        """Entities from spaCy's ``ner`` component alone, on the sentences that could hold a name.

        Presidio's SpacyNlpEngine runs the whole pipeline (tagger, parser and lemmatizer included)
        on the whole text, for entities and for the lemmas its context enhancer reads. Here the
        enhancer reads the words before each finding from the text itself
        (:class:`InPlaceContextEnhancer`), so no token or lemma is produced, and the regex-only
        mode runs no spaCy code at all.
        """

        engine_name = "asgi_aigw"
        is_available = True

        def __init__(
            self, language: str, model: Any | None, ner_configuration: Any | None, gate: bool
        ) -> None:
            import spacy

            self.language = language
            self.nlp = model if model is not None else spacy.blank(language)
            self.ner: Any = model.get_pipe("ner") if model is not None and "ner" in model.pipe_names else None
            self.ner_configuration = ner_configuration
            self.gate = gate
            self.stop_words = frozenset(self.nlp.Defaults.stop_words)
            # the parser-based NER is not documented as thread-safe: one text at a time
            self._ner_lock = threading.Lock()
            self.ner_characters = 0
            self._empty = self.nlp.make_doc("")

        def load(self) -> None:
            return None

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            entities = self._entities(text) if self.ner is not None else []
            return NlpArtifacts(
                entities=cast(Any, entities),
                tokens=self._empty,
                tokens_indices=[],
                lemmas=[],
                nlp_engine=self,
                language=language,
                scores=[self._score()] * len(entities),
            )

        def process_batch(
            self, texts: Iterable[str], language: str, batch_size: int = 1, n_process: int = 1, **kwargs: Any
        ) -> Iterator[tuple[str, NlpArtifacts]]:
            for text in texts:
                yield text, self.process_text(str(text), language)

        def is_stopword(self, word: str, language: str) -> bool:
            return word.lower() in self.stop_words

        def is_punct(self, word: str, language: str) -> bool:
            return not any(char.isalnum() for char in word)

        def get_supported_entities(self) -> list[str]:
            if self.ner is None or self.ner_configuration is None:
                return []
            mapping = self.ner_configuration.model_to_presidio_entity_mapping or {}
            ignore = set(self.ner_configuration.labels_to_ignore or ())
            return sorted({v for v in mapping.values() if v not in ignore})

        def get_supported_languages(self) -> list[str]:
            return [self.language]

        def _score(self) -> float:
            score = getattr(self.ner_configuration, "default_score", None)
            return float(score) if score is not None else 0.85

        def _entities(self, text: str) -> list[_Entity]:
            segments = name_segments(text, self.stop_words) if self.gate else [(0, len(text))]
            if not segments:
                return []
            mapping = getattr(self.ner_configuration, "model_to_presidio_entity_mapping", None) or {}
            ignore = set(getattr(self.ner_configuration, "labels_to_ignore", None) or ())
            # one call for all segments: the model has a fixed cost per call (a few ms here), and
            # a blank line between segments keeps them apart as sentences would be
            pieces: list[str] = []
            offsets: list[tuple[int, int]] = []  # (offset in the joined text, offset in text)
            position = 0
            for start, end in segments:
                offsets.append((position, start))
                pieces.append(text[start:end])
                position += end - start + len(_JOIN)
            joined = _JOIN.join(pieces)
            self.ner_characters += len(joined)
            doc = self.nlp.make_doc(joined)
            with self._ner_lock:
                doc = self.ner(doc)
            found = []
            for ent in doc.ents:
                label = mapping.get(ent.label_, ent.label_)
                if ent.label_ in ignore or label in ignore:
                    continue
                base, origin = offsets[bisect.bisect_right(offsets, (ent.start_char, len(text))) - 1]
                found.append(_Entity(label, origin + ent.start_char - base, origin + ent.end_char - base))
            return found

    return RedactNlpEngine


# -- assembling the engine --------------------------------------------------------------------------


def spacy_model(base: AnalyzerEngine, language: str) -> Any | None:
    """The loaded spaCy ``Language`` behind ``base``, or None when it has no NER model."""
    models = getattr(base.nlp_engine, "nlp", None)
    if not isinstance(models, dict):
        return None
    model = models.get(language)
    if model is None or "ner" not in getattr(model, "pipe_names", ()):
        return None
    return model


def build_analyzer(base: AnalyzerEngine, config: RedactConfig) -> AnalyzerEngine:
    """An engine with only the configured recognizers, sharing ``base``'s model and recognizers."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry

    language = config.language
    model = None if config.regex_only else spacy_model(base, language)
    if model is None and not config.regex_only:
        logger.warning(
            "The PII analyzer has no NER model for %r: names (PERSON) will not be found. "
            "Install the model or set redact.regex_only: true to silence this warning.",
            language,
        )
    ner_configuration = getattr(base.nlp_engine, "ner_model_configuration", None)
    nlp_engine = _nlp_engine_class()(language, model, ner_configuration, config.ner_gate)
    if model is not None:
        _name_hint()  # built once here, not on the event loop's first clean-text check

    wanted = set(config.scanned_entities())
    registry = RecognizerRegistry(supported_languages=[language])
    phone_class = _windowed_phone_class()
    for recognizer in base.registry.get_recognizers(language=language, all_fields=True):
        supported = set(recognizer.supported_entities)
        if not supported & wanted:
            continue
        if supported == {"PHONE_NUMBER"}:
            recognizer = phone_class(
                context=list(recognizer.context or ()) or None,
                supported_language=language,
                supported_regions=tuple(config.phone_regions),
            )
        elif supported & NER_ENTITIES and model is None:
            continue  # a NER recognizer with no model finds nothing
        registry.add_recognizer(recognizer)
    for custom in config.recognizers:
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=custom.entity,
                name=custom.name,
                supported_language=language,
                patterns=[
                    Pattern(name=f"{custom.name}_{i}", regex=p.regex, score=p.score)
                    for i, p in enumerate(custom.patterns)
                ],
                context=custom.context,
            )
        )
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=[language],
        context_aware_enhancer=_in_place_enhancer_class()(nlp_engine.stop_words),
        default_score_threshold=config.score_threshold,
    )


def supported_entities(engine: AnalyzerEngine, language: str) -> set[str]:
    return {e for recognizer in engine.registry.recognizers for e in recognizer.supported_entities}
