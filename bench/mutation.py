"""Mutation testing of the security- and money-critical modules: do the tests notice a broken check?

Each mutant is one small change to one module (a comparison flipped, a boolean operator swapped, a
constant moved by one, an ``if`` guard dropped or made always false, a ``raise`` removed, a returned
value replaced by ``None``). The module's tests run against every mutant; a mutant the tests still pass
with "survives" and points at a promise no test pins.

    python bench/mutation.py                      # every module below, one after the other
    python bench/mutation.py body cache-keys      # some of them (names or paths)
    python bench/mutation.py body --list          # the mutants, without running anything
    python bench/mutation.py body --only 97       # the mutants on line 97 (or whose key holds a text)

How: the runner imports pytest once, then forks one child per mutant (as mutmut 3 does). The child
puts an import hook in front of the module so that ``import`` loads the mutated code, and runs the
module's test files with ``-x``; the source file on disk is never changed, so an interrupted run
leaves nothing behind. A mutant whose tests exceed the time limit (an endless loop) counts as killed.
Modules run one at a time on one core: the machine stays usable while it runs.

Equivalent mutants (a change no caller can observe, such as a cache size) are listed in
``EQUIVALENT`` below with the reason, and set aside in the second score.
"""

from __future__ import annotations

import argparse
import ast
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """A module under test and the test files that exercise it."""

    path: str
    tests: tuple[str, ...]

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


#: Each module with the test files that call it (a missing file is an error: a renamed test file must
#: not silently leave a module untested). Keep every list short: each mutant runs it.
TARGETS: dict[str, Target] = {
    "body": Target(
        "asgi_aigw/kernel/body.py",
        ("tests/test_pins_body.py", "tests/test_body.py", "tests/test_body_timeout.py"),
    ),
    "cache-keys": Target(
        "asgi_aigw/cache/keys.py",
        ("tests/test_pins_cache_keys.py", "tests/test_cache_stores.py", "tests/test_cache_middleware.py"),
    ),
    "placeholders": Target(
        "asgi_aigw/redact/placeholders.py",
        ("tests/test_pins_placeholders.py", "tests/test_redact_stream.py", "tests/test_redact_stack.py"),
    ),
    "redact-restore": Target(
        "asgi_aigw/redact/restore.py",
        (
            "tests/test_pins_restore.py",
            "tests/test_redact_restore_attack.py",
            "tests/test_redact_stream.py",
            "tests/test_redact_stack.py",
        ),
    ),
    "redact-restore-messages": Target(
        "asgi_aigw/redact/restore_messages.py",
        ("tests/test_pins_restore_messages.py", "tests/test_redact_messages_restore.py"),
    ),
    "redact-tails": Target(
        "asgi_aigw/redact/tails.py",
        (
            "tests/test_pins_restore_messages.py",
            "tests/test_redact_messages_restore.py",
            "tests/test_redact_responses_restore.py",
            "tests/test_pins_restore.py",
            "tests/test_redact_stream.py",
        ),
    ),
    "budget-memory": Target(
        "asgi_aigw/budget/memory.py",
        ("tests/test_pins_budget_stores.py", "tests/test_budget_store.py"),
    ),
    "budget-redis": Target(
        "asgi_aigw/budget/redis.py",
        (
            "tests/test_pins_budget_stores.py",
            "tests/test_budget_store.py",
            "tests/test_budget_lookup_script.py",
        ),
    ),
    "budget-windows": Target(
        "asgi_aigw/budget/windows.py",
        ("tests/test_budget_windows.py", "tests/test_budget_store.py", "tests/test_budget_middleware.py"),
    ),
    "tenant-jwt": Target(
        "asgi_aigw/tenant/jwt.py",
        ("tests/test_tenant_jwks_cache.py", "tests/test_tenant_jwt_checks.py", "tests/test_tenant.py"),
    ),
    "tenant-keys": Target("asgi_aigw/tenant/keys.py", ("tests/test_tenant_keys.py",)),
    "tenant-key-auth": Target(
        "asgi_aigw/tenant/key_auth.py", ("tests/test_tenant_keys.py", "tests/test_tenant_keys_redis.py")
    ),
}

#: Third-party modules the tests import, loaded once before forking (a second or more per mutant).
PRELOAD = (
    "pytest",
    "hypothesis",
    "httpx",
    "redis.asyncio",
    "pydantic",
    "anyio",
    "asgiref.testing",
    "uvicorn",
    "aiohttp",
    "orjson",
    "yaml",
    "jwt",
)

#: Mutants no test can kill because no caller can observe them, by module and mutant key, with why.
EQUIVALENT: dict[str, dict[str, str]] = {
    "body": {
        "<module>: 256 -> 255": "byte 0xff never occurs in UTF-8, and json_depth only sees bodies orjson parsed",
        "_read_chunks: if chunk -> if True": "an empty chunk adds nothing to the size or to the joined bytes",
        "_read_chunks: 0 -> -1 #2": "chunks[-1] is chunks[0] when there is one chunk",
        'parse_json: raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth(r... '
        '[drop raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH]': "the bracket count only skips the "
        "exact measure (the depth never exceeds it): without it every body is measured, same answers",
        'parse_json: raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH [Gt->GtE]': "with exactly 128 "
        "brackets the depth is at most 128, which passes the exact measure too",
    },
    "placeholders": {
        'placeholders_in: if "<" in text -> if True': "a shortcut: without a '<' the pattern finds nothing",
        **dict.fromkeys(
            [
                'PlaceholderMap.restore: if "<" not in text or not self.values -> if False',
                'PlaceholderMap.restore: "<" not in text or not self.values [Or->And]',
                'PlaceholderMap.restore: "<" not in text or not self.values [drop "<" not in text]',
                'PlaceholderMap.restore: "<" not in text or not self.values [drop not self.values]',
            ],
            "a shortcut: without a '<', or with nothing allocated, the substitution changes nothing",
        ),
        "PlaceholderMap._value: if escaped is None -> if True": "only the memo of escaped values",
        "PlaceholderMap.split_tail: if self._prefixes is None -> if True": "only the memo of prefixes",
        **dict.fromkeys(
            [
                "PlaceholderMap.split_tail: len(text) - self._max_length + 1 [Add->Sub]",
                "PlaceholderMap.split_tail: 1 -> 0",
            ],
            "a wider window only finds a '<' whose tail is as long as the longest placeholder, which is "
            "never a proper prefix of one",
        ),
        **dict.fromkeys(
            ["PlaceholderMap.split_tail: 0 -> -1 #2", "PlaceholderMap.split_tail: if cut < 0 -> if False"],
            "at cut -1 the tail is the last character, which is not '<', and every prefix starts with '<'",
        ),
        "PlaceholderMap.split_tail: if not self.values -> if False": "with nothing allocated the longest "
        "placeholder is 0 long, so the window is empty and nothing is held either way",
        "PlaceholderMap.split_tail: 1 -> 0 #2": "adds the empty prefix, which text[cut:] never is",
    },
    "budget-memory": {
        **dict.fromkeys(
            [
                "_Tenant.sweep: expires <= now [LtE->Lt]",
                "_Tenant.sweep: expires <= now [LtE->Lt] #2",
                "_Tenant.value: entry[1] <= now [LtE->Lt]",
                "MemoryBudgetStore.reserve: entry[1] <= now [LtE->Lt]",
                "MemoryBudgetStore.settle: entry[1] > now [Gt->GtE]",
            ],
            "expiry times are whole seconds and time.time() a float: they are equal only by chance, "
            "for a microsecond",
        ),
        **dict.fromkeys(
            [
                "MemoryBudgetStore.reserve: len(state.counters) > 64 [Gt->GtE]",
                "MemoryBudgetStore.reserve: 64 -> 65",
                "MemoryBudgetStore.reserve: 64 -> 63",
                "MemoryBudgetStore.reserve: len(state.reservations) > 1024 [Gt->GtE]",
                "MemoryBudgetStore.reserve: 1024 -> 1025",
                "MemoryBudgetStore.reserve: 1024 -> 1023",
            ],
            "when to sweep is tuning: expired entries are never read, only kept a little longer",
        ),
        **dict.fromkeys(
            [
                "MemoryBudgetStore.reserve: True -> False",
                "MemoryBudgetStore.reserve: True -> False #3",
                "MemoryBudgetStore.reserve: True -> False #4",
                "MemoryBudgetStore.reserve: True -> False #5",
                "MemoryBudgetStore.settle: True -> False",
            ],
            "zip(strict=...): the middleware always passes one amount and limit per slot",
        ),
        "MemoryBudgetStore.reserve: token is not None and token in state.reservations "
        "[drop token is not None]": "None is never a key of the reservations, so the membership test "
        "alone is False for it too",
        "MemoryBudgetStore.reserve: entry is None or entry[1] <= now [drop entry[1] <= now]": "an "
        "expired counter then grows instead of restarting, but keeps its past expiry, so it is never "
        "read again (value() checks the expiry)",
        "MemoryBudgetStore.settle: delta and entry is not None and entry[1] > now [drop delta]": "adding "
        "a delta of 0 changes nothing",
        "MemoryBudgetStore.settle: delta and entry is not None and entry[1] > now [drop entry[1] > now]": (
            "a settlement then changes an expired counter, which is never read again"
        ),
        "MemoryBudgetStore.reserve: if token is not None -> if True": "a reservation remembered under "
        "None is never looked up: reserve and settle check the token is not None first",
    },
    "budget-redis": {
        **dict.fromkeys(
            [
                '_Script.fast_packed: if not str(exc).startswith("NOSCRIPT") -> if False',
                "_Script.fast_packed: raise -> pass",
            ],
            "another error is then retried once after loading the script, and the retry raises it "
            "again: one round trip more, the same outcome",
        ),
        **dict.fromkeys(
            ["RedisBudgetStore.__init__: 64 -> 65", "RedisBudgetStore.__init__: 64 -> 63"],
            "the default pool size is tuning",
        ),
        "RedisBudgetStore._script: if self._given is not None -> if True": "the same script through "
        "redis-py instead of the fast client: slower, same replies",
        "RedisBudgetStore.reads: clients is not None and url == self.url and not clients.topology "
        "[drop clients is not None]": "a store without clients was given one, so it has no URL: "
        "url == self.url is false already",
        **dict.fromkeys(
            [
                "RedisBudgetStore._keys_packed: if keys is None or packed is None -> if True",
                "RedisBudgetStore._keys_packed: keys is None or packed is None [Or->And]",
                "RedisBudgetStore._keys_packed: keys is None or packed is None [drop keys is None]",
                "RedisBudgetStore._keys_packed: keys is None or packed is None [drop packed is None]",
            ],
            "only the memo of key names (both memos are filled and cleared together)",
        ),
        **dict.fromkeys(
            [
                "RedisBudgetStore._keys_packed: if len(self._key_cache) > 10_000 -> if True",
                "RedisBudgetStore._keys_packed: len(self._key_cache) > 10_000 [Gt->GtE]",
                "RedisBudgetStore._keys_packed: 10000 -> 10001",
                "RedisBudgetStore._keys_packed: 10000 -> 9999",
            ],
            "when the key-name memo is cleared is tuning (that it is bounded is tested)",
        ),
        'RedisBudgetStore._settle_call: packed or "0" [drop "0"]': 'the settle script reads "" and "0" '
        "alike: nothing to add, the marker deleted",
        "RedisBudgetStore._settle_call: if keys -> if True": "a settle script call with no counters "
        "changes nothing: one round trip more",
    },
    "cache-keys": {
        "CacheKeys._scope_and_question: if self._semantic is None -> if True": "only the memo: computing "
        "the scope and question again gives the same values",
        "CacheKeys._compute_semantic: request.get(turns) or [] [drop []]": "without turns the last "
        "message is None either way, and the question with it",
    },
    "budget-windows": {
        "Slot: False -> True #2": "the suffix is made of the window and the start, which are compared already",
        **dict.fromkeys(
            ["SlotClock.__init__: 1 -> 2", "SlotClock.__init__: 1 -> 0"],
            "any start value that is not a real minute makes the first call compute the slots (minute 0 "
            "is 1970-01-01 00:00, which no clock reads)",
        ),
        **dict.fromkeys(
            ["to_units: if value < 0 -> if False", "to_units: 0 -> -1"],
            "every negative limit is unlimited to the stores, so -1 and -1e9 nano-dollars mean the same",
        ),
        **dict.fromkeys(
            ["from_units: value >= 0 [GtE->Gt]", "from_units: 0 -> 1"],
            "0 and 0.0 are the same figure in a header and in a message",
        ),
        'format_amount: f"{value / NANOS_PER_DOLLAR:.6f}".rstrip("0").rstrip(".") or "0" [drop "0"]': (
            "the formatted figure always keeps its units digit, so the fallback never applies"
        ),
    },
    "redact-restore-messages": {
        "MessagesStreamRestorer.on_event: if not self._held and not _may_hold_placeholder(raw) and "
        'b"\\\\\\\\" not i... -> if False': "a fast path: without it the event is parsed and searched, "
        "finds no placeholder and goes on unchanged all the same",
        **dict.fromkeys(
            [
                "MessagesStreamRestorer._delta: return False -> return None",
                "MessagesStreamRestorer._delta: return False -> return None #2",
            ],
            "the caller only asks whether it is true",
        ),
    },
    "redact-tails": {
        "HeldTails.source: if self._source is None -> if True": "only the memo: the prefix matcher is "
        "derived from the placeholder map, which an answer never changes, so a new one matches alike",
        **dict.fromkeys(
            [
                'restore_source: if "<" not in text and "\\\\" not in text -> if False',
                '_Prefixes.split: text[position] in "<\\\\" and self.could_begin(text[position:]) '
                '[drop text[position] in "<\\\\"]',
            ],
            "a fast path: without it the text is parsed and searched, finds no placeholder (could_begin "
            "refuses a tail that starts with neither < nor a backslash) and goes on unchanged all the same",
        ),
        "_escaped_backslash: 0 -> -1": "the character at the match is its own backslash, so a count "
        "starting at -1 reaches the same run",
        'restore_source.value: match.group().startswith("\\\\") and _escaped_backslash(text, match.s... '
        '[drop match.group().startswith("\\\\")]': "a literal < after an odd run of backslashes is not "
        "valid JSON (\\< is no escape), so asking the parity before < changes no valid tool input",
        '_odd_after: len(text) - len(text.rstrip("\\\\")) [Sub->Add]': "len + rstripped has the parity "
        "of the run, and equals len exactly when the text is all backslashes: the same answers",
        **dict.fromkeys(
            [
                "_Prefixes.__init__: 1 -> 0",
                "_Prefixes.__init__: 2 -> 3",
                "_Prefixes.__init__: len(_OPEN_ESCAPED) - 1 [Sub->Add]",
                "_Prefixes.__init__: 1 -> 0 #2",
            ],
            "a wider window, or the empty prefix, which could_begin never asks for, only costs a few "
            "more candidates: could_begin decides what is held",
        ),
        "_Prefixes.could_begin: return False -> return None": "the caller only asks whether it is true",
        **dict.fromkeys(
            [
                "_Prefixes.could_begin: if len(tail) < len(_OPEN_ESCAPED) -> if False",
                "_Prefixes.could_begin: len(tail) < len(_OPEN_ESCAPED) [Lt->LtE]",
            ],
            "a tail that is (a prefix of) the opening escape leaves an empty name, and < alone is a "
            "prefix of every placeholder: True either way",
        ),
        "_Prefixes.could_begin: 0 -> 1": "a first character that is not a name character makes the tail "
        "no placeholder prefix whichever way the name is cut, as prefixes hold name characters only",
    },
    "redact-restore": {
        **dict.fromkeys(
            [
                "JSONRestorer.__call__: if not self.mapping or not _may_hold_placeholder(body) -> if False",
                "JSONRestorer.__call__: not self.mapping or not _may_hold_placeholder(body) [Or->And]",
                "JSONRestorer.__call__: not self.mapping or not _may_hold_placeholder(body) "
                "[drop not self.mapping]",
                "JSONRestorer.__call__: not self.mapping or not _may_hold_placeholder(body) "
                "[drop not _may_hold_placeholder(body)]",
                "StreamRestorer.on_event: if not self._held and not _may_hold_placeholder(raw) -> if False",
            ],
            "a fast path: without it the answer is parsed and searched, finds no placeholder and goes on "
            "unchanged all the same",
        ),
        **dict.fromkeys(
            [
                'StreamRestorer.on_event: if event.data == b"[DONE]" or not event.data -> if False',
                'StreamRestorer.on_event: event.data == b"[DONE]" or not event.data [Or->And]',
                'StreamRestorer.on_event: event.data == b"[DONE]" or not event.data '
                '[drop event.data == b"[DONE]"]',
                'StreamRestorer.on_event: event.data == b"[DONE]" or not event.data [drop not event.data]',
            ],
            "[DONE] and an empty data line are not JSON: the decode that follows passes them on unchanged",
        ),
        "restore_json_value: escape or key in JSON_SOURCE_FIELDS [drop escape]": "arguments is a string in "
        "every answer format, so nothing is nested below it to inherit the escaping",
        **dict.fromkeys(
            [
                "StreamRestorer.on_end: if not self._held -> if False",
                "StreamRestorer.on_end: if not text -> if False",
            ],
            "nothing held makes no closing chunk either way, and held text is never empty (HeldTails keeps a "
            "tail only when there is one)",
        ),
        **dict.fromkeys(
            ["StreamRestorer._restore_choice: 1 -> 2", "StreamRestorer._restore_choice: 1 -> 0"],
            "the tool slot of a text field's key is internal; text fields never share a key with arguments",
        ),
        "StreamRestorer._flush_choice: return False -> return None": "the caller only asks whether it is "
        "true",
        "StreamRestorer._flush_choice: if text -> if True": "held text is never empty (HeldTails keeps a tail "
        "only when there is one)",
    },
    "tenant-jwt": {
        "JWKSCache._refreshing: self._lock is not None and self._lock.locked() [drop self._lock is not None]": (
            "read only once an attempt has been made, and every attempt creates the lock first"
        ),
        "JWKSCache._refresh: if self._keys -> if True": "a first fetch that fails leaves no keys, and key() "
        "then answers the same 503 (only the log line's wording differs)",
        **dict.fromkeys(
            [
                "JWKSCache._fetch: 0 -> 1",
                "JWKSCache._fetch: 0 -> -1",
                "JWKSCache._fetch: anonymous += 1 [Add->Sub]",
                "JWKSCache._fetch: 1 -> 2",
            ],
            "the names given to keys without a kid are internal: they only need to differ",
        ),
        **dict.fromkeys(
            [
                "JWTVerifier._key_for: if kid is not None and not isinstance(kid, str) -> if False",
                'JWTVerifier._key_for: raise TokenRejected("The token\'s key id (kid) is not a string.") -> pass',
            ],
            "PyJWT already refuses a header whose kid is not a string (a 401, not well-formed)",
        ),
    },
    "tenant-keys": {
        "matches: hmac.compare_digest(computed, expected) and stored is not None [drop stored is not None]": (
            "an unknown id is compared against an all-zero digest, which no SHA-256 of a key equals"
        ),
    },
    "tenant-key-auth": {
        "KeyAuthenticator.check: not matches(key, record.hash if record is not None else None) or re... "
        "[drop record is None]": "matches() is already false without a record; the test narrows the type",
    },
}


# ---------------------------------------------------------------------------------------------------
# Generating mutants


_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
}


@dataclass
class Mutant:
    """One change: where it is and what it does (``key`` is stable across unrelated edits)."""

    index: int
    line: int
    key: str


@dataclass
class _Site:
    line: int
    scope: str
    text: str


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order, numbering every possible change; applies the one asked for.

    With ``target=None`` it only records the changes. Docstrings, annotations, ``__slots__`` /
    ``__all__`` and ``if TYPE_CHECKING`` blocks are not mutated: no behaviour lives there. String
    constants are left alone too (messages; the tests of the wording are not what this measures).
    """

    def __init__(self, source: str, target: int | None) -> None:
        self.source = source
        #: the lines as UTF-8, since the nodes' column offsets count bytes
        self.lines = [line.encode() for line in source.splitlines(keepends=True)]
        self.target = target
        self.count = 0
        self.found: list[Mutant] = []
        self.scope: list[str] = []
        self.seen: dict[str, int] = {}

    # -- bookkeeping ------------------------------------------------------------------------------
    def _offer(self, node: ast.AST, what: str) -> bool:
        """Record one possible change at ``node``; True when it is the one to apply."""
        index = self.count
        self.count += 1
        scope = ".".join(self.scope) or "<module>"
        base = f"{scope}: {what}"
        n = self.seen.get(base, 0) + 1
        self.seen[base] = n
        key = base if n == 1 else f"{base} #{n}"
        self.found.append(Mutant(index, getattr(node, "lineno", 0), key))
        return index == self.target

    def _seg(self, node: ast.AST) -> str:
        """The node's source text (ast.get_source_segment splits the whole source on every call)."""
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if start is None or end is None:
            return _short(ast.unparse(node))
        lines = self.lines[start - 1 : end]
        if len(lines) == 1:
            text = lines[0][node.col_offset : node.end_col_offset]  # type: ignore[attr-defined]
        else:
            first = lines[0][node.col_offset :]  # type: ignore[attr-defined]
            text = first + b"".join(lines[1:-1]) + lines[-1][: node.end_col_offset]  # type: ignore[attr-defined]
        return _short(text.decode())

    # -- scopes and skipped parts -----------------------------------------------------------------
    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> ast.AST:
        self.scope.append(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        node.body[len(node.body) - len(body) :] = [self.visit(stmt) for stmt in body]
        if not isinstance(node, ast.ClassDef):
            node.args = self.visit(node.args)
        self.scope.pop()
        return node

    visit_FunctionDef = _visit_scope
    visit_AsyncFunctionDef = _visit_scope
    visit_ClassDef = _visit_scope

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node  # annotations only

    def visit_arguments(self, node: ast.arguments) -> ast.AST:
        node.defaults = [self.visit(d) for d in node.defaults]
        node.kw_defaults = [d if d is None else self.visit(d) for d in node.kw_defaults]
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        names = {t.id for t in node.targets if isinstance(t, ast.Name)}
        if names & {"__slots__", "__all__"}:
            return node
        return self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # a docstring or a bare string
        return self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # message text

    # -- the changes ------------------------------------------------------------------------------
    def visit_If(self, node: ast.If) -> ast.AST:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return node
        test = self._seg(node.test)
        if self._offer(node, f"if {test} -> if True"):
            node.test = ast.Constant(True)
        elif self._offer(node, f"if {test} -> if False"):
            node.test = ast.Constant(False)
        return self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        if self._offer(node, f"{self._seg(node)} -> pass"):
            return ast.Pass()
        return self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        value = node.value
        if (
            value is not None
            and not (isinstance(value, ast.Constant) and value.value is None)
            and self._offer(node, f"return {self._seg(value)} -> return None")
        ):
            node.value = ast.Constant(None)
            return node
        return self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        text = self._seg(node)
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap is not None and self._offer(node, f"{text} [{type(op).__name__}->{swap.__name__}]"):
                node.ops[i] = swap()
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        text = self._seg(node)
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._offer(node, f"{text} [{type(node.op).__name__}->{other.__name__}]"):
            node.op = other()
            return self.generic_visit(node)
        for i, value in enumerate(node.values):
            if self._offer(node, f"{text} [drop {self._seg(value)}]"):
                rest = node.values[:i] + node.values[i + 1 :]
                kept: ast.AST = self.visit(rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest))
                return kept
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.op, ast.Not) and self._offer(node, f"{self._seg(node)} [drop not]"):
            operand: ast.AST = self.visit(node.operand)
            return operand
        return self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap is not None and self._offer(
            node, f"{self._seg(node)} [{type(node.op).__name__}->{swap.__name__}]"
        ):
            node.op = swap()
        return self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap is not None and self._offer(
            node, f"{self._seg(node)} [{type(node.op).__name__}->{swap.__name__}]"
        ):
            node.op = swap()
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._offer(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int):
            for new in (value + 1, value - 1):
                if self._offer(node, f"{value} -> {new}"):
                    return ast.copy_location(ast.Constant(new), node)
        return node


def list_mutants(source: str) -> list[Mutant]:
    mutator = _Mutator(source, None)
    mutator.visit(ast.parse(source))
    return mutator.found


def mutated_code(source: str, filename: str, index: int) -> CodeType:
    tree = ast.parse(source)
    mutator = _Mutator(source, index)
    tree = mutator.visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec")


# ---------------------------------------------------------------------------------------------------
# Running the tests against one mutant (in a forked child)


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, code: CodeType) -> None:
        self.code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)


class _MutantFinder(importlib.abc.MetaPathFinder):
    """Serves the mutated code for one module name; every other import goes the normal way."""

    def __init__(self, name: str, path: Path, code: CodeType) -> None:
        self.name, self.path, self.code = name, path, code

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=_MutantLoader(self.code))


def _pytest_args(target: Target, extra: list[str]) -> list[str]:
    missing = [t for t in target.tests if not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"{target.path}: its test files {missing} do not exist; update TARGETS")
    return [
        *target.tests,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-o",
        "addopts=",
        *extra,
    ]


def _run_child(target: Target, code: CodeType | None, extra: list[str], quiet: bool) -> int:
    """Fork; the child runs the tests (with the mutant, if any) and exits with pytest's code."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()  # the parent can kill the child's whole group (servers it started) on a timeout
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        if code is not None:
            sys.meta_path.insert(0, _MutantFinder(target.module, ROOT / target.path, code))
        import pytest

        rc = pytest.main(_pytest_args(target, extra))
        sys.stdout.flush()
        os._exit(int(rc))
    except BaseException:
        os._exit(99)


def _wait(pid: int, timeout: float) -> tuple[int | None, float]:
    """The child's exit code (``None`` on timeout, after killing it) and how long it took."""
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), time.monotonic() - start
        if time.monotonic() - start > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None, time.monotonic() - start
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------
# The command


@dataclass
class Result:
    name: str
    total: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0

    def score(self) -> str:
        total, killed = self.total, self.killed
        plain = f"{killed}/{total} = {100 * killed / total:.0f}%" if total else "-"
        net = total - len(self.equivalent)
        return (
            f"{plain}; without {len(self.equivalent)} equivalent: {killed}/{net} = {100 * killed / net:.0f}%"
            if net
            else plain
        )


def _selected(mutants: list[Mutant], only: list[str]) -> Iterator[Mutant]:
    for m in mutants:
        if not only or any(o == str(m.line) or (not o.isdigit() and o in m.key) for o in only):
            yield m


def run_target(name: str, target: Target, only: list[str], verbose: bool) -> Result:
    source = (ROOT / target.path).read_text()
    mutants = list(_selected(list_mutants(source), only))
    equivalent = EQUIVALENT.get(name, {})
    result = Result(name)
    print(
        f"== {name}: {target.path}, {len(mutants)} mutants, tests: {' '.join(_pytest_args(target, [])[:3])} ..."
    )
    pid = _run_child(target, None, [], quiet=not verbose)
    rc, took = _wait(pid, 900)
    if rc != 0:
        print(f"   the tests fail without any mutant (exit {rc}): fix them first")
        return result
    timeout = max(20.0, 4 * took + 10)
    print(f"   clean run {took:.1f} s; per-mutant limit {timeout:.0f} s")
    start = time.monotonic()
    for m in mutants:
        code = mutated_code(source, str(ROOT / target.path), m.index)
        rc, took = _wait(_run_child(target, code, [], quiet=not verbose), timeout)
        result.total += 1
        if rc is None:
            result.killed += 1
            result.timeouts += 1
            state = "timeout"
        elif rc == 0:
            if m.key in equivalent:
                result.equivalent.append(m)
                state = "equivalent"
            else:
                result.survivors.append(m)
                state = "SURVIVED"
        elif rc == 5:  # no tests collected: a setup problem, not a kill
            result.survivors.append(m)
            state = "SURVIVED (no tests ran)"
        else:
            result.killed += 1
            # listed as equivalent yet killed: the list is wrong, say so
            state = "killed (listed as equivalent)" if m.key in equivalent else "killed"
        if verbose or state not in ("killed", "timeout"):  # survivors and surprises
            print(f"   {state:>10}  L{m.line:<4} {m.key}  ({took:.1f} s)")
    result.seconds = time.monotonic() - start
    stale = set(equivalent) - {m.key for m in mutants}
    if stale and not only:
        print(f"   note: equivalent keys that match no mutant (the code changed?): {sorted(stale)}")
    print(f"   {name}: killed {result.score()} ({result.timeouts} by timeout), {result.seconds:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"names ({', '.join(TARGETS)}) or paths; default: all")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--only", action="append", default=[], help="a line number or a text in the key")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output and every mutant")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    by_path = {t.path: n for n, t in TARGETS.items()}
    names = [by_path.get(m, m) for m in args.modules] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(TARGETS)}")
    if args.list:
        for name in names:
            target = TARGETS[name]
            for m in _selected(list_mutants((ROOT / target.path).read_text()), args.only):
                mark = "  (equivalent)" if m.key in EQUIVALENT.get(name, {}) else ""
                print(f"{name} #{m.index:<4} L{m.line:<4} {m.key}{mark}")
        return 0
    # imported once here so that each forked child starts warm (third-party only: the package itself
    # must be imported by the child, after the mutant's import hook is in place)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass

    results = [run_target(n, TARGETS[n], args.only, args.verbose) for n in names]
    print("\n| module | killed / total | without equivalent mutants | survivors |")
    print("|---|---|---|---|")
    for r in results:
        net = r.total - len(r.equivalent)
        pct = f"{100 * r.killed / net:.0f}%" if net else "-"
        raw = f"{r.killed}/{r.total}"
        print(
            f"| {TARGETS[r.name].path} | {raw} | {r.killed}/{net} = {pct} ({len(r.equivalent)} set aside) | {len(r.survivors)} |"
        )
    return 1 if any(r.survivors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
