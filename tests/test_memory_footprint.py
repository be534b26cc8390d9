"""What a worker holds: each check runs in a fresh interpreter, so nothing an earlier test loaded counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter (this checkout first on the path); its last stdout line as JSON."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_loaded_encoding_keeps_no_python_copy_of_its_ranks() -> None:
    result = run_python(
        """
        import gc, json, tracemalloc
        import tiktoken
        from asgi_aigw.runtime.tokens import count_text_tokens, get_encoding
        tracemalloc.start()
        get_encoding("o200k_base")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        print(json.dumps({"held": held, "count": count_text_tokens("Hello, how are you today?", "gpt-4o")}))
        """
    )
    # o200k_base's 200,000 ranks as a Python dict of bytes are about 27 MB; the Rust core is not traced
    assert int(result["held"]) < 8_000_000  # type: ignore[call-overload]
    assert result["count"] == 7  # counting still works on the core alone


HEAVY = (
    "onnxruntime",
    "fastembed",
    "tokenizers",
    "qdrant_edge",
    "qdrant_client",
    "chdb",
    "clickhouse_connect",
)


def test_a_stack_without_the_semantic_layer_or_chdb_loads_neither() -> None:
    result = run_python(
        """
        import asyncio, json, sys
        import httpx
        from asgi_aigw import build_app
        from asgi_aigw.config import GatewayConfig
        from asgi_aigw.testing import FakeProvider, StreamingASGITransport

        url = "http://fake.invalid/v1"
        model = {"provider": "openai", "model": "gpt-4o-mini", "base_url": url, "api_key": "sk-test-not-a-real-key"}
        config = GatewayConfig.model_validate({
            "router": {"models": [{"name": "gpt-4o-mini", "deployments": [model]}]},
            "tenant": {"header": "x-tenant-id"},
            "budget": {"store": "memory://", "limits": {"requests_per_minute": 1000}},
            "redact": {"regex_only": True},
            "cache": {"store": "memory://", "vector_store": None},
            "log": {"store": "memory://", "spool_dir": None},
        })
        app = build_app(config, transports={url: StreamingASGITransport(FakeProvider())}, env={})

        async def main():
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                for question in ("What is the capital of France?", "What is the capital of France?"):
                    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
                    response = await client.post("/ai/v1/chat/completions", json=body, headers={"x-tenant-id": "t"})
                    assert response.status_code == 200, response.text
            await asyncio.sleep(0.2)
            return response.headers.get("x-aigw-cache")

        cache = asyncio.run(main())
        print(json.dumps({"cache": cache, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
        """
    )
    assert result["cache"] == "hit-exact"  # the cache did run, on its exact layer alone
    loaded = set(result["modules"])  # type: ignore[call-overload]
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_preload_loads_what_the_layers_would_load_later_and_starts_no_thread() -> None:
    result = run_python(
        """
        import gc, json, threading
        from asgi_aigw import build_app
        from asgi_aigw.cache import SemanticCacheMiddleware
        from asgi_aigw.config import GatewayConfig
        from asgi_aigw.preload import preload
        from asgi_aigw.redact import RedactMiddleware
        from asgi_aigw.runtime import tokens

        model = {"model": "gpt-4o-mini", "base_url": "http://fake.invalid/v1", "api_key": "sk-test-not-a-real-key"}
        config = GatewayConfig.model_validate({
            "router": {"models": [{"name": "gpt-4o-mini", "deployments": [model]}]},
            "budget": {"store": "memory://"},
            "redact": {"regex_only": True},
            "cache": {"store": "memory://", "vector_store": "memory://"},
        })
        app = build_app(config, env={})
        layers = {}
        layer = app
        while layer is not None:
            layers[type(layer).__name__] = layer
            layer = getattr(layer, "app", None)
        before = threading.active_count()
        preload(app, config)
        print(json.dumps({
            "threads": [before, threading.active_count()],
            "encodings": sorted(tokens._encodings),
            "engine": layers["RedactMiddleware"].scanner._engine is not None,
            "model": layers["SemanticCacheMiddleware"].embedder.loaded,
            "frozen": gc.get_freeze_count() > 0,
            "young threshold": gc.get_threshold()[0],
        }))
        """
    )
    assert result == {
        "threads": [1, 1],
        "encodings": ["o200k_base"],
        "engine": True,
        "model": True,
        "frozen": True,
        "young threshold": 10_000,  # the forked workers inherit it
    }


def test_the_free_heap_goes_back_to_the_system() -> None:
    result = run_python(
        """
        import ctypes, json
        from asgi_aigw.runtime.heap import release_free_heap

        def rss():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) // 1024

        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(32 * 1024) for _ in range(3000)]  # ~94 MB below glibc's mmap threshold
        for block in blocks:
            ctypes.memset(block, 1, 32 * 1024)
        for block in blocks[:-1]:  # the last one stays: free cannot shrink the heap from its top
            libc.free(block)
        before = rss()
        released = release_free_heap()
        print(json.dumps({"released": released, "before": before, "after": rss()}))
        """
    )
    assert result["released"] is True
    assert int(result["before"]) - int(result["after"]) > 80  # type: ignore[call-overload]


def test_the_chdb_log_imports_neither_pandas_nor_pyarrow_and_chdb_still_gives_arrow(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import json, sys
        from asgi_aigw.logs import ClickHouseSink

        sink = ClickHouseSink({f"chdb://{tmp_path}/chdb"!r})
        sink.write([{{"request_id": "one", "tenant": "t", "timestamp": 1765000000000}}], "batch-1")
        rows = sink.query("SELECT request_id, tenant, toUnixTimestamp64Milli(timestamp) FROM {{table}}")
        loaded = sorted(m for m in ("pandas", "pyarrow", "numpy") if m in sys.modules)
        sink.close()
        import chdb  # the application's own Arrow queries still work: pyarrow comes on first use
        table = chdb.connect({str(tmp_path / "other")!r}).query("SELECT 1 AS x", "ArrowTable")
        print(json.dumps({{"rows": rows, "loaded": loaded, "arrow": [type(table).__name__, table.num_rows]}}))
        """
    )
    assert result == {"rows": [["one", "t", 1765000000000]], "loaded": [], "arrow": ["Table", 1]}


def test_budget_and_cache_on_one_redis_server_never_import_redis_py(
    redis_url: str, redis_prefix: str
) -> None:
    # redis-py 8 imports the OpenTelemetry SDK and psutil: 10 MB and 158 modules; the fast client does
    # every call for a URL of one server
    result = run_python(
        f"""
        import asyncio, json, sys
        from asgi_aigw import build_app
        from asgi_aigw.config import GatewayConfig
        from asgi_aigw.testing import FakeProvider, StreamingASGITransport
        from asgi_aigw.testing.raw_asgi import post

        url = "http://fake.invalid/v1"
        model = {{"provider": "openai", "model": "gpt-4o-mini", "base_url": url, "api_key": "sk-test-not-a-real-key"}}
        config = GatewayConfig.model_validate({{
            "router": {{"models": [{{"name": "gpt-4o-mini", "deployments": [model]}}]}},
            "tenant": {{"header": "x-tenant-id"}},
            "budget": {{"store": {redis_url!r}, "key_prefix": {redis_prefix!r}, "limits": {{"requests_per_minute": 1000}}}},
            "cache": {{"store": {redis_url!r}, "key_prefix": {redis_prefix + "cache:"!r}, "vector_store": None}},
            "log": {{"store": "memory://", "spool_dir": None}},
        }})
        app = build_app(config, transports={{url: StreamingASGITransport(FakeProvider())}}, env={{}})
        body = b'{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

        async def main():
            return [await post(app, "/ai/v1/chat/completions", body, [(b"x-tenant-id", b"t")]) for _ in range(2)]

        answers = asyncio.run(main())
        print(json.dumps({{"statuses": [status for status, _ in answers],
                          "redis": "redis" in sys.modules, "otel": "opentelemetry" in sys.modules}}))
        """
    )
    assert result == {"statuses": [200, 200], "redis": False, "otel": False}


def test_httpx_comes_without_its_command_line_until_it_is_called() -> None:
    result = run_python(
        """
        import contextlib, io, json, sys
        import asgi_aigw
        import httpx
        before = {name: name in sys.modules for name in ("httpx._main", "rich", "pygments")}
        with contextlib.redirect_stdout(io.StringIO()) as out:
            httpx.main(["--help"], standalone_mode=False)
        print(json.dumps({"before": before, "help": "Usage" in out.getvalue(), "after": "httpx._main" in sys.modules}))
        """
    )
    assert result == {
        "before": {"httpx._main": False, "rich": False, "pygments": False},
        "help": True,  # the real command line, imported when called
        "after": True,
    }
