"""Run directories for the GUI tests: empty and populated (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modis_app_fixtures import build_tree

@pytest.fixture(scope="session")
def populated_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A run directory with the seeds, 24 derived designs and results (built once per session)."""
    run_dir = tmp_path_factory.mktemp("populated_run")
    facts = build_tree(run_dir, 24)
    (run_dir / "outcomes.jsonl").write_text(
        "".join('{"thread_id": "design-%05d", "status": "%s"}\n' % (i, s)
                for i, s in enumerate(["committed"] * 5 + ["failed", "rejected"])))
    (run_dir / "discover.log").write_text("$ modis discover\ndiscover:  50%|#####     | 3/6\rdiscover: 100%|##| 6/6\n")
    return run_dir, facts


@pytest.fixture()
def empty_run(tmp_path: Path) -> Path:
    """An empty run directory."""
    path = tmp_path / "empty_run"
    path.mkdir()
    return path
