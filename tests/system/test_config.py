"""SystemConfig: YAML round-trip, the shipped example, and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_discovery.config import ConfigError, SystemConfig

REPO = Path(__file__).resolve().parents[2]


def test_shipped_example_loads_and_round_trips(tmp_path: Path) -> None:
    cfg = SystemConfig.load(REPO / "etc" / "system.yaml")
    assert cfg.ladder == ["micro"] and cfg.selector == "evolutionary"
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert SystemConfig.load(path) == cfg


def test_default_tree_url_is_sqlite_in_run_dir(tmp_path: Path) -> None:
    cfg = SystemConfig(run_dir=tmp_path)
    assert cfg.resolved_tree_url == f"sqlite:///{tmp_path.resolve() / 'tree.sqlite'}"
    assert cfg.budget("micro") == 1000 and SystemConfig(budgets={"micro": 3}).budget("micro") == 3


@pytest.mark.parametrize(("text", "field"), [
    ("selector: clever\n", "selector"),
    ("flow: {max_review_rounds: 0}\n", "flow.max_review_rounds"),
    ("stepz: 3\n", "stepz"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        SystemConfig.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: field {field}:") and "\n" not in message


def test_unreadable_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("ladder: [micro\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: cannot read config"):
        SystemConfig.load(path)


def test_pass_at_k_counts_checked_designs_only() -> None:
    from model_discovery.design import DesignOutcome
    from model_discovery.system import DiscoveryReport

    o = lambda status, n: DesignOutcome(thread_id="t", status=status, check_attempts=n)  # noqa: E731
    report = DiscoveryReport(request="r", outcomes=[o("committed", 1), o("committed", 3), o("failed", 4),
                                                     o("rejected", 0)])
    assert report.pass_at_k() == {1: 1 / 3, 2: 1 / 3, 3: 2 / 3, 4: 2 / 3}
    assert "pass@1 0.33" in report.summary()


def test_verify_data_is_validated_as_a_data_config(tmp_path: Path) -> None:
    cfg = SystemConfig.parse({"verify": {"data": {"source": "hf", "hf_dataset": "roneneldan/TinyStories"}}})
    assert cfg.verify.data == {"source": "hf", "hf_dataset": "roneneldan/TinyStories"}
    path = tmp_path / "bad.yaml"
    path.write_text("verify: {data: {source: hf}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field verify.data: .*hf_dataset is required"):
        SystemConfig.load(path)


def test_one_cache_root_for_every_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_discovery.knowledge.types import default_cache_dir
    from model_discovery.paths import cache_root
    from model_discovery.system import BuildSystem

    monkeypatch.setenv("MODIS_CACHE", str(tmp_path / "env-cache"))
    assert cache_root() == (tmp_path / "env-cache").resolve()
    assert default_cache_dir() == cache_root() / "knowledge"
    system = BuildSystem(SystemConfig(run_dir=tmp_path / "run", cache_dir=tmp_path / "run-cache"))
    try:  # the config's cache wins over the environment, and travels with every verification job
        assert system.verify_options.cache_dir == str(tmp_path / "run-cache")
    finally:
        system.close()
