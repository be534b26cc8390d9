"""Word lists of the verifier: synonyms, quantifiers, relation words, symbols read as words.

Kept apart from :mod:`.verify` so the lists can grow without touching the rules. Every list is short on
purpose: a synonym that is not one serves a wrong answer, a missing one only costs a miss.
"""

from __future__ import annotations

import re

#: Words that ask the same thing, mapped to one representative (applied before and after stemming).
#: Only pairs that are interchangeable in a question; "error"/"exception" or "stop"/"pause" are not.
_SYNONYM_GROUPS = (
    ("write", "wrote", "written", "writ", "author", "writer"),
    ("cancel", "terminate", "unsubscribe", "stop"),
    ("delete", "remove", "erase"),
    ("fix", "repair", "solve"),
    ("big", "large", "huge"),
    ("small", "little", "tiny"),
    ("buy", "purchase"),
    ("begin", "start"),
    ("car", "automobile"),
    ("enable", "activate"),
    ("disable", "deactivate"),
    ("see", "check", "view", "find out"),
    ("price", "cost"),
    ("picture", "photo", "image"),
    ("movie", "film"),
    ("doctor", "physician"),
    ("child", "kid", "children", "kids"),
    ("choose", "pick", "select"),
    ("change", "modify", "alter", "edit", "update"),
    ("gift", "gifts", "present", "presents"),
    ("reduce", "lower"),
    ("parcel", "package"),
    ("respond", "reply", "answer"),
    ("hard", "difficult"),
    ("fast", "rapid", "speedy"),
    ("shop", "store"),
    ("sick", "ill"),
    ("phone", "telephone", "smartphone"),
    ("home", "house"),
    ("error", "mistake"),
    ("recover", "restore", "retrieve"),
    ("rename", "re-name"),
    ("forget", "forgot", "forgotten", "forgetting"),
    ("responsibility", "role"),
    ("cheap", "inexpensive"),
    ("close", "shut"),
    ("times", "multiply", "multiplied", "multiplying"),
    ("divid", "divide", "divided", "dividing"),
    ("minus", "subtract", "subtracted"),
    ("plus", "add", "added", "adding"),
)

SYNONYMS: dict[str, str] = {word: group[0] for group in _SYNONYM_GROUPS for word in group}

#: Nouns read as the verb they name ("a passport renewal" asks what "renew a passport" asks); then
#: stemmed like any word.
DERIVED: dict[str, str] = {
    "renewal": "renew",
    "arrival": "arrive",
    "approval": "approve",
    "removal": "remove",
    "refusal": "refuse",
    "withdrawal": "withdraw",
    "rental": "rent",
    "disposal": "dispose",
    "cancellation": "cancel",
    "deletion": "delete",
    "installation": "install",
    "registration": "register",
    "payment": "pay",
    "delivery": "deliver",
    "shipment": "ship",
    "shipping": "ship",
    "replacement": "replace",
    "repayment": "repay",
}

#: Two-word phrases read as one word before tokenising ("turn on" = "enable").
PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bturn(?:s|ed|ing)? on\b"), "enable"),
    (re.compile(r"\bturn(?:s|ed|ing)? off\b"), "disable"),
    (re.compile(r"\bswitch(?:es|ed|ing)? on\b"), "enable"),
    (re.compile(r"\bswitch(?:es|ed|ing)? off\b"), "disable"),
    (re.compile(r"\bget(?:s|ting)? rid of\b"), "delete"),
    (re.compile(r"\bfind out\b"), "see"),
    (re.compile(r"\blook up\b"), "see"),
    (re.compile(r"\bset(?:ting)? up\b"), "setup"),
    (re.compile(r"\bsign(?:ing)? up\b"), "register"),
    (re.compile(r"\b(?:log|sign)(?:ging)? (?:in(?:to)?|on)\b"), "login"),
    (re.compile(r"\b(?:get|have|receive)s? (?:my |your |the |our )?money back\b"), "refund"),
    (re.compile(r"\bwhat time\b"), "when"),
    (re.compile(r"\bin order to\b"), "to"),
    (re.compile(r"\b(?:send|give|bring|take)(?:s|ing)? back\b"), "return"),
    (re.compile(r"\bhow come\b"), "why"),
    (re.compile(r"\bmore than\b"), "more than"),
    (re.compile(r"\bless than\b"), "fewer than"),
    (re.compile(r"\bversus\b|\bvs\.?(?=\s)"), " vs "),
)

#: Symbols between numbers or spaced out, read as the words people write instead ("10 / 2" is
#: "10 divided by 2", "3pm" is not "3 am").
SYMBOLS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<=\d)\s*\+\s*(?=\d)|\s\+\s"), " plus "),
    (re.compile(r"(?<=\d)\s*[-\u2212]\s*(?=\d)|\s[-\u2212]\s"), " minus "),
    (re.compile(r"(?<![\w.])[-\u2212](?=\d)"), " negative "),
    (re.compile(r"(?<=\d)\s*[*\u00d7]\s*(?=\d)|\s[*\u00d7]\s|(?<=\d)\s*x\s*(?=\d)"), " times "),
    (re.compile(r"(?<=\d)\s*[/\u00f7]\s*(?=\d)|\s[/\u00f7]\s"), " divided by "),
    (re.compile(r"(?<=\d)\s*\^\s*(?=\d)|\*\*"), " power "),
    (re.compile(r"(?<=\d)\s*%"), " percent"),
    (re.compile(r"\s?>=\s?|\s?\u2265\s?"), " atleast "),
    (re.compile(r"\s?<=\s?|\s?\u2264\s?"), " atmost "),
    (re.compile(r"\s>\s"), " greater than "),
    (re.compile(r"\s<\s"), " fewer than "),
    (re.compile(r"\s?==?\s?(?=\d|\s)"), " equals "),
    (re.compile(r"(\d)\s*a\.?m\.?(?![a-z])"), r"\1 antemeridiem"),
    (re.compile(r"(\d)\s*p\.?m\.?(?![a-z])"), r"\1 postmeridiem"),
    (re.compile(r"\$\s?(?=\d)"), " dollar "),
    (re.compile(r"\u20ac\s?(?=\d)"), " euro "),
    (re.compile(r"\u00a3\s?(?=\d)"), " pound "),
)

#: Quantifiers, by what they claim: "all cats" and "some cats" are different questions, "all" and
#: "every" the same. "any" is left out: "is there any way" only frames a question.
QUANTIFIERS: dict[str, str] = {
    "all": "all",
    "every": "all",
    "each": "all",
    "always": "all",
    "both": "all",
    "some": "some",
    "several": "some",
    "sometimes": "some",
    "most": "most",
    "mostly": "most",
    "majority": "most",
    "usually": "most",
    "few": "few",
    "fewest": "few",
    "rarely": "few",
    "seldom": "few",
    "many": "many",
    "often": "many",
    "only": "only",
}

#: Function words that relate the words around them (an operator, a comparison, an order, a role):
#: a content word that crosses one of them from one side to the other swaps the arguments
#: ("10 divided by 2", "the dog chased the cat", "cats are animals").
RELATIONS = frozenset(
    {
        "and",
        "or",
        "vs",
        "than",
        "to",
        "from",
        "by",
        "of",
        "into",
        "onto",
        "over",
        "under",
        "then",
        "versus",
        "is",
        "are",
        "was",
        "were",
        "be",
        "for",
        "with",
        "as",
        "at",
        "on",
        "in",
    }
)

#: The copula in all its forms is one relation word.
COPULA = frozenset({"is", "are", "was", "were", "be", "am"})

#: Conjunctions whose two sides may be swapped without changing the question, when the question is
#: about both sides alike ("the difference between TCP and UDP"); "or" always ("rent or buy").
SYMMETRIC_CONJUNCTIONS = frozenset({"and", "vs", "or", "&"})
SYMMETRIC_TRIGGERS = frozenset(
    {
        "difference",
        "differ",
        "different",
        "compare",
        "comparison",
        "compared",
        "vs",
        "between",
        "similar",
        "similarity",
        "same",
        "equal",
        "alike",
        "distinguish",
        "contrast",
        "both",
    }
)
