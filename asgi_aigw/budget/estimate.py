"""What one request body asks of the budget, worked out once per body and tenant (see
:class:`~asgi_aigw.kernel.body_memo.BodyMemo`): the same bytes asked again (an exact cache hit, a
client's retry) reuse it instead of reading the body, counting its prompt and pricing it again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .windows import Slot


@dataclass(slots=True)
class Estimate:
    """Tokens and nano-dollars to reserve for a body, and what reserving them needs."""

    #: Prompt tokens, and the most output tokens the request may produce (its cap times its choices).
    prompt: int
    output: int
    #: Nano-dollars reserved (the dearest prompt-cache write price its breakpoints allow).
    cost: int
    #: The model asked for, when it has no price (a money limit then refuses the request).
    unpriced: str | None
    #: The output cap's field, when the client set none: the budget sets it to what it reserved.
    cap_field: str | None
    #: The amounts of the last slots reserved in (the slots change once a minute): see :meth:`amounts`.
    _slots: Sequence[Slot] | None = field(default=None, repr=False)
    _amounts: list[int] = field(default_factory=list, repr=False)

    @property
    def tokens(self) -> int:
        return self.prompt + self.output

    def amounts(self, slots: Sequence[Slot]) -> list[int]:
        """What to reserve in each slot: one request, the tokens or the nano-dollars, by its metric.
        The list is shared by requests of the same body in the same slots: never changed in place."""
        if slots is not self._slots:
            self._amounts = slot_amounts(slots, self.tokens, self.cost)
            self._slots = slots
        return self._amounts


def slot_amounts(slots: Sequence[Slot], tokens: int, cost: int) -> list[int]:
    """One request, ``tokens`` or ``cost`` in each slot, by the slot's metric."""
    by = {"requests": 1, "tokens": tokens, "cost": cost}
    return [by[metric] for metric in _metrics(slots)]


def slot_deltas(
    slots: Sequence[Slot], tokens: int, requests: int, cost: int, held: Sequence[int]
) -> list[int]:
    """What each slot's count moves by when what it ``held`` is replaced by ``requests``, ``tokens`` or
    ``cost``, by the slot's metric."""
    by = {"requests": requests, "tokens": tokens, "cost": cost}
    return [by[metric] - amount for metric, amount in zip(_metrics(slots), held, strict=True)]


#: The last slots whose metrics were read, and those metrics: a request's slots are the same object for
#: a minute (see :class:`~.windows.SlotClock`), and this is read before and after every request.
_last: tuple[Sequence[Slot] | None, tuple[str, ...]] = (None, ())


def _metrics(slots: Sequence[Slot]) -> tuple[str, ...]:
    global _last
    last = _last
    if last[0] is slots:
        return last[1]
    metrics = tuple(slot.window.metric for slot in slots)
    _last = (slots, metrics)  # one assignment: a thread reading it sees the old pair or the new
    return metrics
