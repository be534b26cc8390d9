"""Which deployment to try, when to try again, and which deployments to leave alone for a while.

The router owns I/O; this module owns the decisions, so they can be tested without a network:

- order: ``fallback`` tries deployments as configured, ``weighted`` draws an order at random by weight
  (the first pick is proportional to weight; the others remain as fallbacks);
- retries: a failed attempt that is worth repeating (connect error, timeout, 408, 409, 425, 429, 5xx)
  moves straight to the next deployment; once every deployment was tried, further attempts wait an
  exponential backoff with full jitter, or the upstream's ``Retry-After`` when it is longer;
- cooldown: a deployment failing ``failures`` times in a row is skipped for ``seconds``, in this process,
  when its model has other deployments to send the traffic to (as LiteLLM does: cooling down a model's
  only deployment would turn every passing failure into half a minute of 503s).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel.errors import GatewayError, UpstreamUnavailable
from ..providers.base import Deployment
from ..providers.errors import RETRYABLE_STATUSES
from .config import CooldownConfig, RetryConfig
from .registry import ResolvedModel

#: Statuses (the upstream's, or the gateway's own 502/503/504 for transport failures) worth retrying.
RETRYABLE = RETRYABLE_STATUSES


def is_retryable(error: GatewayError) -> bool:
    return error.status in RETRYABLE


def retry_after(error: GatewayError, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from the error's ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = next((v for k, v in error.headers if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


@dataclass(slots=True)
class _Health:
    failures: int = 0
    until: float = 0.0


class RoutingPolicy:
    """Retry and cooldown decisions for one router (state is per process, keyed by deployment id)."""

    def __init__(
        self,
        retry: RetryConfig | None = None,
        cooldown: CooldownConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.retry = retry or RetryConfig()
        self.cooldown = cooldown or CooldownConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._health: dict[str, _Health] = {}

    # -- cooldowns ----------------------------------------------------------------------------------

    def cooling_for(self, deployment: Deployment) -> float:
        """Seconds left in the deployment's cooldown (0 when it is in rotation)."""
        health = self._health.get(deployment.id)
        if health is None or not health.until:
            return 0.0
        left = health.until - self.clock()
        if left <= 0:
            health.until = 0.0
            return 0.0
        return left

    def failed(self, deployment: Deployment, pause: float | None = None) -> bool:
        """Count a failed attempt; True when it put the deployment in cooldown."""
        threshold = self.cooldown.failures
        if threshold <= 0:
            return False
        health = self._health.get(deployment.id)
        if health is None:
            health = self._health[deployment.id] = _Health()
        health.failures += 1
        if health.failures < threshold:
            return False
        health.failures = 0
        health.until = self.clock() + max(self.cooldown.seconds, pause or 0.0)
        return True

    def succeeded(self, deployment: Deployment) -> None:
        health = self._health.get(deployment.id)
        if health is not None and health.failures:
            health.failures = 0

    # -- order and attempts -------------------------------------------------------------------------

    def order(self, resolved: ResolvedModel) -> list[Deployment]:
        deployments = resolved.deployments
        if resolved.strategy != "weighted" or len(deployments) < 2:
            return list(deployments)
        # Efraimidis-Spirakis: sorting by u ** (1 / weight) is a weighted draw without replacement
        rng = self.rng
        return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)

    def plan(self, resolved: ResolvedModel) -> Attempts:
        """The attempts for one request; 503 at once when every deployment is cooling down."""
        ordered = self.order(resolved)
        available = [d for d in ordered if not self.cooling_for(d)]
        if not available:
            wait = min(self.cooling_for(d) for d in ordered)
            seconds = max(1, math.ceil(wait))
            raise UpstreamUnavailable(
                f"Every deployment of '{resolved.name}' is cooling down after repeated failures; "
                f"retry in {seconds}s.",
                code="deployments_cooling_down",
                headers=[("retry-after", str(seconds))],
            )
        return Attempts(self, available, cools=len(resolved.deployments) > 1)

    def backoff(self, round_: int) -> float:
        cap = min(self.retry.backoff_max, self.retry.backoff_base * (2**round_))
        return self.rng.uniform(0.0, cap) if cap > 0 else 0.0


class Attempts:
    """One request's walk through its deployments: the first, then one decision per failure."""

    __slots__ = ("_cools", "_cursor", "_given_up", "_plan", "_policy", "made", "max_attempts")

    def __init__(self, policy: RoutingPolicy, plan: list[Deployment], *, cools: bool = True) -> None:
        self._policy = policy
        self._cools = cools
        self._plan = plan
        self._cursor = 0
        self._given_up: set[str] = set()
        self.made = 0
        self.max_attempts = len(plan) + policy.retry.retries

    def first(self) -> Deployment:
        self.made = 1
        self._cursor = 0
        return self._plan[0]

    def record_failure(self, deployment: Deployment, pause: float | None = None) -> None:
        """Count a failure towards the deployment's cooldown (when its model has others to use)."""
        if self._cools:
            self._policy.failed(deployment, pause)

    def after_failure(self, deployment: Deployment, error: GatewayError) -> tuple[Deployment, float] | None:
        """Record the failure; the next deployment to try and the pause before it, or ``None``."""
        policy = self._policy
        pause = retry_after(error)
        self.record_failure(deployment, pause)
        if pause is not None and pause > policy.retry.max_retry_after:
            self._given_up.add(deployment.id)  # it asked for longer than we are willing to hold the client
        if self.made >= self.max_attempts:
            return None
        plan = self._plan
        n = len(plan)
        nxt: Deployment | None = None
        for step in range(1, n + 1):
            candidate = plan[(self._cursor + step) % n]
            if candidate.id not in self._given_up and not policy.cooling_for(candidate):
                nxt = candidate
                self._cursor = (self._cursor + step) % n
                break
        if nxt is None:
            return None
        if self.made < n:
            # first round: every deployment once, straight away (unless the same one asked us to wait)
            delay = pause if (pause and nxt.id == deployment.id) else 0.0
        else:
            delay = policy.backoff(self.made - n)
            if pause is not None and nxt.id == deployment.id:
                delay = max(delay, pause)
        self.made += 1
        return nxt, delay
