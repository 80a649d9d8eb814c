"""The GUI's design page shows an invented unit's lineage, genome and generated code (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from model_discovery.app.common import DESIGN_KEY, RUN_DIR_KEY
from model_discovery.config import SystemConfig
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import load_seed
from model_discovery.genome import spec as gs
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit

MAIN = Path(__file__).resolve().parents[2] / "model_discovery" / "app" / "main.py"


def test_design_page_shows_genome_and_code(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(SystemConfig(run_dir=tmp_path).to_yaml())
    seed = load_seed("llama")
    genome = gs.MixerGenome(token_mixer=gs.LinearRecurrence(feature_map="elu1"))
    name, spec = genome_unit(GenomeEdit(genome, "point", "token_mixer.feature_map: 'identity' -> 'elu1'"))
    design = with_unit(seed, name, spec)
    tree = EvolutionTree(tmp_path / "tree.sqlite")
    tree.add_design(seed, operator="seed")
    tree.add_design(design, operator="mutate_unit")
    tree.close()

    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.session_state[RUN_DIR_KEY] = str(tmp_path)
    at.session_state[DESIGN_KEY] = design.name
    at.run()
    at.switch_page("pages/design.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    markdown = "\n".join(str(m.value) for m in at.markdown)
    assert "invented by point: token_mixer.feature_map: 'identity' -> 'elu1'" in markdown
    codes = [str(c.value).strip() for c in at.code]
    assert spec.source.strip() in codes
    assert json.dumps(genome.model_dump(mode="json"), indent=2, sort_keys=True) in codes
