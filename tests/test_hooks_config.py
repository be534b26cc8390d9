"""Hooks named by ``module:callable`` in the YAML configuration, and the start-up errors of hooks that
cannot run: a path that does not import, a name that is not there, a hook that is not async."""

from __future__ import annotations

import functools
import runpy
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_aigw import ConfigError, build_app, load_config
from asgi_aigw.cli import main
from asgi_aigw.config import parse_config
from asgi_aigw.hooks import HookRequest, HookResponse, Hooks
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, eventually
from .test_import_graph import import_graph

HOOK_MODULE = """
import asyncio

from asgi_aigw.hooks import HookRefusal

seen = []


async def guard(request):
    if "project-x" in str(request.body):
        raise HookRefusal("Project X is not discussed here.", status=451, code="topic_refused")


async def tag(request):
    # sees what the hooks given in code did first
    return {**request.body, "user": "tagged-after-" + str(request.body.get("user"))}


def blocking(request):
    return None


not_callable = 42


class Audit:
    async def __call__(self, response):
        await asyncio.sleep(0.05)  # slower than the client: drain() must wait for it
        seen.append((response.request.dialect, response.text))


audit = Audit()
"""


@pytest.fixture
def hook_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module of hooks importable under a name unique to this test."""
    name = f"app_hooks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(HOOK_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def write_config(tmp_path: Path, hooks: str) -> Path:
    """A gateway configuration routing ``gpt`` to FakeProvider, with ``hooks`` under ``router.hooks``."""
    path = tmp_path / "gateway.yaml"
    deployment = (
        f'{{provider: openai, model: gpt-4o-mini, base_url: "{FAKE_URL}", api_key: sk-test-not-a-real-key}}'
    )
    lines = [
        "prefix: /ai",
        "router:",
        "  models:",
        "    - name: gpt",
        f"      deployments: [{deployment}]",
        "  hooks:",
        *(f"    {line}" for line in hooks.splitlines()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_yaml_hooks_refuse_change_and_audit(tmp_path: Path, hook_module: str) -> None:
    config = load_config(
        write_config(
            tmp_path,
            f"before_request: ['{hook_module}:guard', '{hook_module}:tag']\n"
            f"after_response: ['{hook_module}:audit']\n",
        )
    )

    async def from_code(request: HookRequest) -> dict[str, Any]:
        return {**request.body, "user": "code"}

    fake = FakeProvider()
    app = build_app(
        config, transports={FAKE_URL: StreamingASGITransport(fake)}, hooks=Hooks(before_request=[from_code])
    )
    chat = {"model": "gpt", "messages": [{"role": "user", "content": "Tell me about project-x"}]}
    async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://gw") as client:
        refused = await client.post("/ai/v1/chat/completions", json=chat)
        chat["messages"][0]["content"] = "Hello there"
        allowed = await client.post("/ai/v1/chat/completions", json=chat)
    assert refused.status_code == 451
    assert refused.json()["error"]["code"] == "topic_refused"
    assert allowed.status_code == 200
    [sent] = fake.requests
    # the hook from code ran first, the YAML ones after it, in their order
    assert sent.json["user"] == "tagged-after-code"
    module = __import__(hook_module)
    assert await eventually(lambda: module.seen == [("chat", "Echo: Hello there")])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("no_such_module_{u}:guard", "cannot import 'no_such_module_{u}' for 'no_such_module_{u}:guard'"),
        ("{m}:missing", "'{m}' has no 'missing' (from '{m}:missing')"),
        ("{m}", "'{m}' is not a hook path; write 'package.module:function'"),
        ("{m}:blocking", "'{m}:blocking': The on_error hook blocking is not async"),
        ("{m}:not_callable", "'{m}:not_callable': The on_error hook 42 is not callable"),
        # calling a class builds an instance: its async __call__ would never run (was accepted)
        ("{m}:Audit", "'{m}:Audit': The on_error hook Audit is not async"),
        # a module that fails as it loads (was a traceback, not a config error)
        ("raises_{u}:hook", "cannot import 'raises_{u}' for 'raises_{u}:hook': RuntimeError: no settings"),
        ("syntax_{u}:hook", "cannot import 'syntax_{u}' for 'syntax_{u}:hook': SyntaxError"),
    ],
)
def test_a_hook_that_cannot_run_is_a_config_error_at_start_up(
    tmp_path: Path, hook_module: str, path: str, expected: str
) -> None:
    u = uuid.uuid4().hex[:8]
    (tmp_path / f"raises_{u}.py").write_text("raise RuntimeError('no settings')\n", encoding="utf-8")
    (tmp_path / f"syntax_{u}.py").write_text("async def hook(:\n", encoding="utf-8")
    path = path.format(m=hook_module, u=u)
    config = load_config(write_config(tmp_path, f"on_error: ['{path}']\n"))
    with pytest.raises(ConfigError) as caught:
        build_app(config)
    message = str(caught.value)
    assert expected.format(m=hook_module, u=u) in message
    assert "on_error" in message


def test_an_unknown_hook_point_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"router\.hooks\.before"):
        parse_config({"router": {"hooks": {"before": ["x:y"]}}})


def sync_hook(response: HookResponse) -> None:
    return None


async def async_hook(response: HookResponse) -> None:
    return None


class AsyncCallable:
    async def __call__(self, response: HookResponse) -> None:
        return None


class SyncCallable:
    def __call__(self, response: HookResponse) -> None:
        return None


@pytest.mark.parametrize("hook", [sync_hook, SyncCallable(), lambda response: None])
def test_a_hook_given_in_code_that_is_not_async_is_refused(hook: Any) -> None:
    with pytest.raises(ConfigError, match=r"The after_response hook .* is not async.*'async def'"):
        Hooks(after_response=[hook])


@pytest.mark.parametrize("hook", [async_hook, AsyncCallable(), functools.partial(async_hook)])
def test_async_functions_callables_and_partials_are_hooks(hook: Any) -> None:
    assert Hooks(after_response=[hook]).after_response == (hook,)


SNIPPET = Path(__file__).resolve().parent.parent / "docs" / "snippets" / "hooks_guardrail.py"


def test_the_documented_snippet_refuses_and_audits(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/hooks.md includes docs/snippets/hooks_guardrail.py: run it as a script."""
    runpy.run_path(str(SNIPPET), run_name="__main__")
    # the audit and error hooks run in the background: their lines may come before or after the client's
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "audit: acme gpt-4o-mini 10 tokens: 'Echo: Hello'",
        "error: 403 refused_by_hook after 0 upstream attempts",
        "refused: 403 refused_by_hook",
    ]


def test_aigw_serve_preload_reports_a_hook_module_that_raises(
    tmp_path: Path, hook_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"raises_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no settings')\n", encoding="utf-8")
    path = write_config(tmp_path, f"after_response: ['{name}:audit']\n")
    assert main(["serve", "--config", str(path), "--preload"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aigw serve: router.hooks.after_response: cannot import {name!r}")
    assert "RuntimeError: no settings" in err
    assert "Traceback" not in err


def test_aigw_serve_reports_a_bad_hook_before_starting(
    tmp_path: Path, hook_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, f"before_request: ['{hook_module}:blocking']\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"aigw serve: router.hooks.before_request: '{hook_module}:blocking': The before_request hook "
        "blocking is not async"
    )


def test_the_hooks_package_imports_only_the_kernel() -> None:
    """The router imports the hooks: they must not bring a middleware (or the router) with them."""
    graph = import_graph()
    outside = {
        module: sorted(t for t in targets if not t.startswith(("asgi_aigw.kernel", "asgi_aigw.hooks")))
        for module, targets in graph.items()
        if module.startswith("asgi_aigw.hooks")
    }
    assert len(outside) == 5
    assert {module: found for module, found in outside.items() if found} == {}


async def test_drain_on_the_hooks_given_in_code_waits_for_the_configured_ones_too(
    tmp_path: Path, hook_module: str
) -> None:
    config = load_config(write_config(tmp_path, f"after_response: ['{hook_module}:audit']\n"))
    hooks = Hooks()
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, hooks=hooks)
    chat = {"model": "gpt", "messages": [{"role": "user", "content": "Hello there"}]}
    async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://gw") as client:
        assert (await client.post("/ai/v1/chat/completions", json=chat)).status_code == 200
    await hooks.drain()
    assert __import__(hook_module).seen == [("chat", "Echo: Hello there")]
