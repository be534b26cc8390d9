"""Callables the configuration names as ``module:callable`` (the tenant resolver and authorize check,
the dashboard's authorize check): a module that is missing or raises as it loads, a missing name, or
something not callable is a ConfigError at start-up that names the path, never a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asgi_aigw.dashboard import DashboardApp, DashboardConfig
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

NOT_CALLABLE = 42


async def _app(scope: Any, receive: Any, send: Any) -> None:
    return None


def _tenant_resolver(path: str, tmp_path: Path) -> None:
    TenantMiddleware(_app, config=TenantConfig(resolver=path))


def _tenant_authorize(path: str, tmp_path: Path) -> None:
    TenantMiddleware(_app, config=TenantConfig(authorize=path))


def _dashboard_authorize(path: str, tmp_path: Path) -> None:
    DashboardApp(config=DashboardConfig(authorize=path), log=tmp_path / "log.jsonl")


@pytest.mark.parametrize("build", [_tenant_resolver, _tenant_authorize, _dashboard_authorize])
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("raises_{u}:check", "cannot import 'raises_{u}': RuntimeError: no settings"),
        ("syntax_{u}:check", "cannot import 'syntax_{u}': SyntaxError"),
        ("no_such_{u}:check", "cannot import 'no_such_{u}': ModuleNotFoundError"),
        (f"{__name__}:missing", f"{__name__!r} has no 'missing'"),
        (f"{__name__}:NOT_CALLABLE", "is not callable"),
        ("just_a_module", "must look like 'package.module:function'"),
    ],
)
def test_a_bad_path_is_a_config_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    build: Callable[[str, Path], None],
    path: str,
    expected: str,
) -> None:
    u = uuid.uuid4().hex[:8]
    (tmp_path / f"raises_{u}.py").write_text("raise RuntimeError('no settings')\n", encoding="utf-8")
    (tmp_path / f"syntax_{u}.py").write_text("def check(:\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        build(path.format(u=u), tmp_path)
    assert expected.format(u=u) in str(caught.value)


SERVE_BASE = """router:
  models:
    - name: gpt
      deployments: [{provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:9/v1",
                     api_key: sk-test-not-a-real-key}]
"""


@pytest.mark.parametrize("preload", [False, True])
@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("tenant: {resolver: 'no_such_mod_x:resolve'}\n", "tenant.resolver 'no_such_mod_x:resolve': cannot"),
        ("tenant: {authorize: 'no_such_mod_x:check'}\n", "tenant.authorize 'no_such_mod_x:check': cannot"),
        ("log: {store: 'jsonl://{tmp}/r.jsonl'}\ndashboard: {}\n", "give it an authorize check"),
        (
            "log: {store: 'jsonl://{tmp}/r.jsonl'}\ndashboard: {authorize: 'no_such_mod_x:check'}\n",
            "dashboard.authorize 'no_such_mod_x:check' cannot be loaded",
        ),
        ("dashboard: {allow_anonymous: true}\n", "The dashboard reads the request log"),
    ],
)
def test_aigw_serve_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, says: str, preload: bool
) -> None:
    """These errors were found only as the app was built: a traceback from the worker (or from the
    parent with --preload) instead of the one line every other configuration error gets."""
    from asgi_aigw.cli import main
    from asgi_aigw.testing.server import free_port

    if preload:
        pytest.importorskip("gunicorn")
    path = tmp_path / "gateway.yaml"
    path.write_text(SERVE_BASE + section.replace("{tmp}", str(tmp_path)), encoding="utf-8")
    argv = ["serve", "--config", str(path), "--port", str(free_port())]
    assert main([*argv, "--preload"] if preload else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("aigw serve: "), err
    assert says in err
    assert "Traceback" not in err
