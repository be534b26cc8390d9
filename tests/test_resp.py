"""The budget's minimal Redis client: URL parsing, reply parsing, real round trips, error replies,
cancellation, stale connections, AUTH and SELECT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from asgi_aigw.stores import resp
from asgi_aigw.stores.redis_tls import TlsOptions
from asgi_aigw.stores.resp import ConnectionLost, Endpoint, FastRedis, RespError, pack, read_reply

from .redis_server import RedisServer


@pytest.fixture(params=["hiredis", "python"], autouse=True)
def reply_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with hiredis parsing the replies, and again with the parser of this package."""
    if request.param == "python":
        monkeypatch.setattr(resp, "_hiredis", None)
    else:
        pytest.importorskip("hiredis")
    return str(request.param)


def test_urls() -> None:
    assert Endpoint.from_url("redis://127.0.0.1:6379/0") == Endpoint(
        "127.0.0.1", 6379, None, 0, None, None, None
    )
    assert Endpoint.from_url("rediss://me:p%40ss@cache.internal:7000/3") == Endpoint(
        "cache.internal", 7000, None, 3, "me", "p@ss", TlsOptions()
    )
    assert Endpoint.from_url("redis://:secret@host") == Endpoint("host", 6379, None, 0, None, "secret", None)
    assert Endpoint.from_url("unix:///run/redis.sock?db=2") == Endpoint(
        None, 0, "/run/redis.sock", 2, None, None, None
    )
    with pytest.raises(ValueError, match="not a Redis URL"):
        Endpoint.from_url("http://x")


async def parse(data: bytes) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_reply(reader)


async def test_replies() -> None:
    assert await parse(b"$5\r\nhello\r\n") == b"hello"
    assert await parse(b"$-1\r\n") is None
    assert await parse(b":-42\r\n") == -42
    assert await parse(b"+OK\r\n") == b"OK"
    assert await parse(b"*3\r\n:1\r\n$1\r\na\r\n*-1\r\n") == [1, b"a", None]
    error = await parse(b"-NOSCRIPT No matching script.\r\n")
    assert isinstance(error, RespError)
    assert str(error).startswith("NOSCRIPT")
    with pytest.raises(ConnectionLost):
        await parse(b"$5\r\nhel")  # cut short: readexactly fails, or the line is incomplete
    with pytest.raises(ConnectionLost):
        await parse(b"")
    assert pack([b"GET", b"k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


async def test_round_trips_and_error_replies(redis_url: str, redis_prefix: str) -> None:
    client = FastRedis(redis_url)
    key = f"{redis_prefix}fast".encode()
    assert await client.call(pack([b"PING"])) == b"PONG"
    assert await client.call(pack([b"INCRBY", key, b"5"])) == 5
    with pytest.raises(RespError, match=r"WRONGTYPE|not an integer"):
        await client.call(pack([b"HGET", key, b"f"]))
    # the error did not poison the connection
    assert await client.call(pack([b"GET", key])) == b"5"
    assert client._pipe is not None
    assert client._pipe.usable()  # one connection, still open
    await client.call(pack([b"DEL", key]))
    await client.aclose()


async def test_a_cancelled_calls_reply_goes_to_nobody(redis_url: str) -> None:
    client = FastRedis(redis_url)
    assert await client.call(pack([b"PING"])) == b"PONG"
    task = asyncio.create_task(client.call(pack([b"BLPOP", b"aigw-test:never", b"1"])))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the BLPOP's nil reply (after 1 s) is read and dropped: the next call gets its own reply
    assert await client.call(pack([b"ECHO", b"mine"])) == b"mine"
    await client.aclose()


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    redis_url: str, redis_prefix: str
) -> None:
    client = FastRedis(redis_url)
    key = f"{redis_prefix}pipelined".encode()
    replies = await asyncio.gather(*(client.call(pack([b"ECHO", b"%d" % i])) for i in range(200)))
    assert replies == [b"%d" % i for i in range(200)]
    counts = await asyncio.gather(*(client.call(pack([b"INCR", key])) for _ in range(100)))
    assert sorted(counts) == list(range(1, 101))
    info = await client.call(pack([b"CLIENT", b"ID"]))
    assert isinstance(info, int)
    with pytest.raises(RespError):
        await client.call(pack([b"NOSUCHCOMMAND"]))
    assert await client.call(pack([b"DEL", key])) == 1
    await client.aclose()


async def test_a_server_that_does_not_answer_times_out_every_pending_call() -> None:
    # a listening socket that never replies: the oldest call's deadline fails them all
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = FastRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = await asyncio.gather(*(client.call(pack([b"PING"])) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results), results
    assert 0.15 < loop.time() - start < 1.0
    assert client._pipe is not None
    assert client._pipe.closed
    server.close()
    await client.aclose()


async def serving(answer: bytes) -> asyncio.Server:
    """A server that answers whatever it is sent with ``answer``, then keeps the connection open."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(10)

    return await asyncio.start_server(reply, "127.0.0.1", 0)


async def test_a_malformed_reply_fails_the_pending_call_and_closes_the_connection() -> None:
    server = await serving(b"?what\r\n")
    client = FastRedis(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", timeout=2)
    with pytest.raises(ConnectionLost, match=r"bad reply|unexpected reply"):
        await client.call(pack([b"PING"]))
    assert client._pipe is not None
    assert client._pipe.closed
    server.close()
    await client.aclose()


async def test_a_reply_nobody_waited_for_closes_the_connection() -> None:
    server = await serving(b"+PONG\r\n+PONG\r\n")
    client = FastRedis(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", timeout=2)
    assert await client.call(pack([b"PING"])) == b"PONG"  # its own reply; the next one is nobody's
    assert client._pipe is not None
    assert client._pipe.closed
    server.close()
    await client.aclose()


async def test_a_closed_idle_connection_is_replaced(redis_url: str) -> None:
    client = FastRedis(redis_url)
    assert await client.call(pack([b"PING"])) == b"PONG"
    client._pipe.transport.abort()  # type: ignore[union-attr]  # as if the server had closed it
    await asyncio.sleep(0)
    assert await client.call(pack([b"PING"])) == b"PONG"
    await client.aclose()


async def test_unreachable_server_raises() -> None:
    client = FastRedis("redis://127.0.0.1:9/0", timeout=1)
    with pytest.raises(OSError):
        await client.call(pack([b"PING"]))


@pytest.fixture
def private_redis() -> Iterator[int]:
    """A Redis server of our own with a password (the shared one has none)."""
    server = RedisServer(password="s3cret")
    server.start()
    try:
        yield server.port
    finally:
        server.close()


async def test_auth_and_select(private_redis: int) -> None:
    client = FastRedis(f"redis://:s3cret@127.0.0.1:{private_redis}/5")
    await client.call(pack([b"SET", b"k", b"v"]))
    assert await client.call(pack([b"CLIENT", b"INFO"])) is not None
    info = (await client.call(pack([b"CLIENT", b"INFO"]))).decode()
    assert " db=5 " in f" {info} "
    await client.aclose()
    refused = FastRedis(f"redis://:wrong@127.0.0.1:{private_redis}/0")
    with pytest.raises(RespError, match=r"WRONGPASS|invalid"):
        await refused.call(pack([b"PING"]))
    anonymous = FastRedis(f"redis://127.0.0.1:{private_redis}/0")
    with pytest.raises(RespError, match="NOAUTH"):
        await anonymous.call(pack([b"PING"]))
    await anonymous.aclose()


def test_pipelined_calls_on_uvloop(redis_url: str) -> None:
    # the loop the gateway serves on (uvicorn's default when installed): its transports differ
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[object]:
        client = FastRedis(redis_url)
        try:
            return list(await asyncio.gather(*(client.call(pack([b"ECHO", b"%d" % i])) for i in range(50))))
        finally:
            await client.aclose()

    assert uvloop.run(main()) == [b"%d" % i for i in range(50)]


async def test_a_command_on_a_connection_the_server_dropped_while_idle_is_sent_again() -> None:
    # the first connection answers once, then closes as the next command arrives (a server that timed
    # out the idle client): that command goes once more on a fresh connection
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        answered = 0
        while await reader.read(1 << 16):
            if first and answered == 1:
                writer.close()
                return
            writer.write(b"+PONG\r\n")
            answered += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = FastRedis(f"redis://127.0.0.1:{port}/0")
    assert await client.call(pack([b"PING"])) == b"PONG"
    assert await client.call(pack([b"PING"])) == b"PONG"
    assert connections == 2
    await client.aclose()
    server.close()


async def test_stress_every_reply_reaches_its_own_caller(redis_url: str, redis_prefix: str) -> None:
    """Many concurrent calls on one pipelined connection while callers are cancelled at random, the
    connection is killed by the server, and blocking commands outlast the client's timeout: every call
    that returns gets the reply to its own command (the value of a key names the key), never another's."""
    await _stress(redis_url, redis_prefix)


def test_stress_on_uvloop(redis_url: str, redis_prefix: str) -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_stress(redis_url, redis_prefix))


async def _stress(redis_url: str, redis_prefix: str) -> None:
    import random

    rng = random.Random(7)
    client = FastRedis(redis_url, timeout=0.05)
    admin = FastRedis(redis_url, timeout=2.0)
    keys = [f"{redis_prefix}stress:{i}".encode() for i in range(64)]
    for key in keys:
        await admin.call(pack([b"SET", key, b"value-of:" + key]))
    counts = {"ok": 0, "cancelled": 0, "lost": 0, "timeout": 0}

    async def one(n: int) -> None:
        if n % 97 == 0:  # blocks past the client's timeout: every pending call fails with it
            command = [b"BLPOP", f"{redis_prefix}stress:empty".encode(), b"0.1"]
        elif n % 3 == 0:
            tag = f"echo-{n}".encode()
            assert await client.call(pack([b"ECHO", tag])) == tag
            counts["ok"] += 1
            return
        else:
            key = rng.choice(keys)
            assert await client.call(pack([b"GET", key])) == b"value-of:" + key
            counts["ok"] += 1
            return
        with pytest.raises((TimeoutError, ConnectionLost)):
            await client.call(pack(command))

    async def guarded(n: int) -> None:
        try:
            await one(n)
        except asyncio.CancelledError:
            counts["cancelled"] += 1
        except ConnectionLost:
            counts["lost"] += 1
        except TimeoutError:
            counts["timeout"] += 1

    async def killer() -> None:
        for _ in range(8):
            await asyncio.sleep(0.02)
            pipe = client._pipe
            if pipe is not None and pipe.usable():
                try:
                    own_id = await client.call(pack([b"CLIENT", b"ID"]))
                    await admin.call(pack([b"CLIENT", b"KILL", b"ID", str(own_id).encode()]))
                except (ConnectionLost, TimeoutError):
                    pass

    kill = asyncio.create_task(killer())
    for round_ in range(30):
        tasks = [asyncio.create_task(guarded(round_ * 200 + i)) for i in range(200)]
        await asyncio.sleep(0)
        for task in rng.sample(tasks, 40):  # some before their command leaves, some after
            if rng.random() < 0.5:
                task.cancel()
            else:
                asyncio.get_running_loop().call_later(rng.random() * 0.003, task.cancel)
        await asyncio.gather(*tasks)
    await kill
    await client.aclose()
    await admin.aclose()
    assert counts["ok"] > 1000, counts
    assert counts["cancelled"] > 500, counts
    assert counts["lost"] + counts["timeout"] > 0, counts
