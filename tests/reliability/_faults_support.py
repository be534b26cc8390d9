"""Fault injection helpers: a Redis server of the test's own (stopped, restarted, paused), a request-log
sink that fails for a while, a semantic layer whose embedder or vector store fails, and the full gateway
stack served by a real uvicorn in front of FakeProvider on real ports, counting every answer it gives."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from asgi_aigw import build_app
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.vector import MemoryVectorStore, VectorEntry, VectorMatch
from asgi_aigw.config import GatewayConfig
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.row import LogRow
from asgi_aigw.logs.sinks import MemorySink
from asgi_aigw.testing import FakeProvider, ServerThread
from asgi_aigw.testing.server import free_port

from ..cache_support import BagOfWordsEmbedder
from ..redis_server import RedisServer
from ..support import eventually, sse_payloads

CHAT = "/ai/v1/chat/completions"

# -- Redis of our own ---------------------------------------------------------------------------------


class ReplyCutter:
    """A TCP proxy in front of Redis that, while ``cut`` is set, lets commands through but closes the
    client's connection instead of passing the reply back: the command ran, its caller saw an error
    (a Redis that stopped, or a network that failed, right after running it). It runs on an event
    loop in a thread of its own."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self.cuts = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-reply-cutter", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for writer in self._writers:
            writer.close()
        self._loop.run_until_complete(server.wait_closed())
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self.cut:
                        self.cuts += 1
                        break
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- a sink that is down for a while ------------------------------------------------------------------


class FlakySink:
    """A MemorySink that refuses every write while ``down`` (a dead ClickHouse), or, with ``lose_acks``,
    stores the batch and then fails (the insert happened, its acknowledgement was lost)."""

    def __init__(self) -> None:
        self.inner = MemorySink()
        self.name = self.inner.name
        self.down = False
        self.lose_acks = False
        self.failed_writes = 0
        self.writes = 0

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        self.writes += 1
        if self.down:
            self.failed_writes += 1
            if self.lose_acks:
                self.inner.write(rows, batch_id)
            raise ConnectionError("the log sink is down (fault injected)")
        self.inner.write(rows, batch_id)

    def close(self) -> None:
        self.inner.close()

    @property
    def rows(self) -> list[LogRow]:
        return self.inner.rows


# -- a semantic layer that fails on demand ------------------------------------------------------------


class FlakyVectorStore(MemoryVectorStore):
    """The memory vector store, raising on search and upsert while ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        if self.fail:
            raise ConnectionError("the vector store is down (fault injected)")
        return await super().search(vector, tenant=tenant, scope=scope, limit=limit, now=now)

    async def upsert(self, entry: VectorEntry) -> None:
        if self.fail:
            raise ConnectionError("the vector store is down (fault injected)")
        await super().upsert(entry)

    def entries(self) -> list[VectorEntry]:
        return [entry for scope in self._scopes.values() for entry in scope.entries]


# -- what the gateway logged --------------------------------------------------------------------------


class LogCapture(logging.Handler):
    """Records of the gateway's and uvicorn's loggers, from every thread (uvicorn's loggers do not
    propagate to the root, so pytest's caplog would miss them)."""

    NAMES = ("asgi_aigw", "uvicorn.error", "uvicorn")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def __enter__(self) -> LogCapture:
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)
        logging.getLogger("asgi_aigw").setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)

    def messages(self, logger: str = "asgi_aigw") -> list[str]:
        return [r.getMessage() for r in list(self.records) if r.name.startswith(logger)]

    def crashes(self) -> list[str]:
        """Tracebacks logged by uvicorn (an exception escaped the app) or by the gateway (an unexpected
        error it caught): each is a bug in the gateway's own code."""
        out = []
        for record in list(self.records):
            if (record.exc_info and record.levelno >= logging.ERROR) or (
                record.name.startswith("uvicorn") and "Exception in ASGI application" in record.getMessage()
            ):
                out.append(f"{record.name}: {record.getMessage()}")
        return out


# -- the stack ----------------------------------------------------------------------------------------


def stack_config(
    *,
    upstream: str,
    secondary: str,
    redis_url: str,
    prefix: str,
    spool_dir: str,
    failure_mode: str = "open",
    store_timeout: float = 0.5,
    lookup_timeout: float = 0.5,
    vector: str = "none",
) -> GatewayConfig:
    """The full stack: tenant from a header, budgets and the exact cache in Redis, regex-only redaction,
    the request log, and two models on FakeProvider: ``gpt-4o-mini`` (one deployment) and
    ``with-fallback`` (the same upstream first, a second FakeProvider next)."""
    timeouts = {"connect": 2.0, "read": 10.0, "first_byte": 1.0, "idle": 1.0}

    def deployment(base_url: str) -> dict[str, Any]:
        return {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": base_url,
            "api_key": "sk-test-fake",
            "timeouts": timeouts,
        }

    data: dict[str, Any] = {
        "router": {
            "models": [
                {"name": "gpt-4o-mini", "deployments": [deployment(upstream)]},
                {"name": "with-fallback", "deployments": [deployment(upstream), deployment(secondary)]},
            ],
            "transport": "aiohttp",
            "retry": {"retries": 1, "backoff_base": 0.01, "backoff_max": 0.05, "max_retry_after": 2.0},
            "cooldown": {"failures": 0},
        },
        "tenant": {"header": "x-tenant-id"},
        "budget": {
            "store": redis_url,
            "key_prefix": f"{prefix}budget:",
            "limits": {"requests_per_minute": 10**6, "tokens_per_minute": 10**9},
            "failure_mode": failure_mode,
            "store_timeout": store_timeout,
            "store_retry_seconds": 0.2,
            "error_log_interval": 0,
        },
        "redact": {"regex_only": True},
        "cache": {
            "store": redis_url,
            "vector_store": None if vector == "none" else vector,
            "key_prefix": f"{prefix}cache:",
            "lookup_timeout": lookup_timeout,
            "error_log_interval": 0.001,
        },
        "log": {
            "store": "memory://",
            "spool_dir": spool_dir,
            "flush_interval": 0.05,
            "batch_size": 8,
            "retry_initial": 0.05,
            "retry_max": 0.25,
            "shutdown_timeout": 5.0,
        },
    }
    return GatewayConfig.model_validate(data)


def layer(app: Any, kind: type) -> Any:
    while not isinstance(app, kind):
        app = app.app
    return app


def chat(content: str, *, stream: bool = False, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    if stream:
        body["stream"] = True
    return body


class Answer:
    """What the client got: status, headers, body, and the SSE error event if a stream ended with one."""

    def __init__(self, status: int, headers: httpx.Headers, text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text

    @property
    def error(self) -> dict[str, Any] | None:
        """The OpenAI error object of a JSON error, or of a stream's final ``error`` event."""
        if self.status >= 400:
            data = orjson.loads(self.text)
            return data["error"]  # type: ignore[no-any-return]
        marker = "event: error\ndata: "
        if marker in self.text:
            return orjson.loads(self.text.split(marker, 1)[1].split("\n", 1)[0])["error"]  # type: ignore[no-any-return]
        return None

    @property
    def outcome(self) -> str:
        """``200``, ``502``..., or ``200+sse-error`` for a stream that broke after it started."""
        if self.status == 200 and self.error is not None:
            return "200+sse-error"
        return str(self.status)

    def content(self) -> str:
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            return "".join(
                payload["choices"][0]["delta"].get("content") or ""
                for payload in sse_payloads(self.text)
                if isinstance(payload, dict) and payload.get("choices")
            )
        return str(orjson.loads(self.text)["choices"][0]["message"]["content"])


class FaultStack:
    """The gateway on a real uvicorn, FakeProvider (``fake``, and ``second`` for fallbacks) on real
    ports, a Redis of its own, the request log in a :class:`FlakySink`. ``tally`` counts, per fault,
    the outcomes the client saw; ``requests`` counts every request sent (for rows == requests)."""

    def __init__(
        self,
        tmp: Path,
        redis_server: RedisServer,
        prefix: str = "aigw-faults:",
        redis_url: str | None = None,
        **options: Any,
    ) -> None:
        self.fake = FakeProvider()
        self.second = FakeProvider()
        self.redis = redis_server
        self.prefix = prefix
        self._upstream = ServerThread(self.fake)
        self._secondary = ServerThread(self.second)
        self._upstream.start()
        self._secondary.start()
        self.config = stack_config(
            upstream=self._upstream.base_url + "/v1",
            secondary=self._secondary.base_url + "/v1",
            redis_url=redis_url or redis_server.url,
            prefix=prefix,
            spool_dir=str(tmp / "spool"),
            **options,
        )
        self.app = build_app(self.config, env={})
        self.log_layer = layer(self.app, RequestLogMiddleware)
        self.sink = FlakySink()
        self.log_layer.writer.sink = self.sink
        self.cache = layer(self.app, SemanticCacheMiddleware)
        self.embedder = BagOfWordsEmbedder()
        self.vector = FlakyVectorStore()
        if self.cache.vector is not None:
            self.cache.vector = self.vector
            self.cache._embedder, self.cache._embedder_factory = self.embedder, None
        self.server = ServerThread(self.app)
        self.server.start()
        self.base_url = self.server.base_url
        self.tally: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.requests = 0
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(20.0))

    async def aclose(self) -> None:
        await self.client.aclose()
        await asyncio.to_thread(self.server.stop)
        await asyncio.to_thread(self._upstream.stop)
        await asyncio.to_thread(self._secondary.stop)

    # -- requests -----------------------------------------------------------------------------------

    async def call(
        self, fault: str, body: dict[str, Any], *, tenant: str = "acme", headers: dict[str, str] | None = None
    ) -> Answer:
        """POST a chat request and read the whole answer (a stream to its end); counted under ``fault``."""
        self.requests += 1
        sent = {"x-tenant-id": tenant, **(headers or {})}
        async with self.client.stream("POST", CHAT, json=body, headers=sent) as response:
            text = (await response.aread()).decode()
        answer = Answer(response.status_code, response.headers, text)
        self.tally[fault][answer.outcome] += 1
        return answer

    def count(self, fault: str, outcome: str) -> None:
        """Count a request made by other means (raw sockets)."""
        self.requests += 1
        self.tally[fault][outcome] += 1

    # -- what the stores hold -----------------------------------------------------------------------

    async def rows(self, expected: int | None = None, seconds: float = 10.0) -> list[LogRow]:
        """The request log once it holds ``expected`` rows (default: one per request sent)."""
        want = self.requests if expected is None else expected
        await eventually(lambda: len(self.sink.rows) >= want, seconds)
        await asyncio.sleep(0.2)  # a duplicate would land now
        return list(self.sink.rows)

    def budget_totals(self, tenant: str) -> dict[str, int]:
        """Sum of every counter of ``tenant`` by window code (``rpm``, ``tpm``...), read from Redis."""
        totals: collections.Counter[str] = collections.Counter()
        with self.redis.client() as client:
            for key in client.scan_iter(match=f"{self.prefix}budget:{{{tenant}}}:*"):
                parts = key.decode().rsplit(":", 2)
                if parts[-2] in ("limits", "r") or parts[-1] == "limits":
                    continue  # overrides, and reservation markers (what a reservation holds)
                value = client.get(key)
                totals[parts[-2]] += int(value or 0)
        return dict(totals)

    def exact_entries(self) -> list[bytes]:
        with self.redis.client() as client:
            keys = list(client.scan_iter(match=f"{self.prefix}cache:*"))
            return [client.get(key) or b"" for key in keys]

    def spool_files(self) -> list[Path]:
        """Batches still waiting in the request log's spool."""
        assert self.config.log is not None
        assert self.config.log.spool_dir is not None
        return list(Path(self.config.log.spool_dir).rglob("*.jsonl"))

    def statuses(self) -> dict[str, dict[str, int]]:
        return {fault: dict(counter) for fault, counter in self.tally.items()}


def no_500(stack: FaultStack, rows: list[LogRow], logs: LogCapture) -> None:
    """No answer, row or log line shows a 500 from the gateway's own code."""
    for fault, counter in stack.tally.items():
        assert "500" not in counter, f"{fault}: the client got a 500"
    assert not [r for r in rows if r["status"] == 500], "a log row records a 500"
    assert not [r for r in rows if r["error_code"] == "internal_error"], "a log row records an internal error"
    assert logs.crashes() == [], "the gateway or uvicorn logged a traceback"


def unique_rows(rows: list[LogRow]) -> None:
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request id was logged twice"


# -- raw sockets, for disconnects at each stage --------------------------------------------------------


def request_head(base_url: str, body_length: int, tenant: str = "acme") -> bytes:
    host = base_url.split("//", 1)[1]
    return (
        f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\nx-tenant-id: {tenant}\r\n\r\n"
    ).encode()


async def open_raw(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base_url.split("//", 1)[1].split(":")
    return await asyncio.open_connection(host, int(port))


def abort(writer: asyncio.StreamWriter) -> None:
    """Close the socket at once (RST rather than a graceful shutdown: a client that crashed)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def clear_queue(fake: FakeProvider) -> None:
    """Forget one-shot behaviours a request did not use up (it made fewer attempts than queued)."""
    with fake._lock:
        fake._queue.clear()


def env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
