"""A design with invented units: `modis tree units` shows their genome and code, and `modis export`
writes a Hugging Face folder that loads with transformers and generates."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from model_discovery.cli import app
from model_discovery.gau import get_scale, load_seed
from model_discovery.genome import spec as gs
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit

runner = CliRunner()


def test_invented_design_shows_exports_loads_and_generates(tmp_path) -> None:
    design = load_seed("llama")
    names = []
    for genome in (gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.DeltaRule()),
                   gs.ChannelGenome(structure=gs.Grouped())):
        name, spec = genome_unit(GenomeEdit(genome, "sample", "test genome"))
        design = with_unit(design, name, spec)
        names.append(name)
    path = design.save(tmp_path / "invented.json")

    shown = runner.invoke(app, ["tree", "units", str(path), "--unit", names[0], "--run-dir", str(tmp_path / "none")])
    assert shown.exit_code == 0, shown.output
    assert "invented by sample: test genome" in shown.output and '"delta_rule"' in shown.output
    assert f"class {names[0]}(GAUBase)" in shown.output and "def recurrent" in shown.output
    missing = runner.invoke(app, ["tree", "units", str(path), "--unit", "Nope", "--run-dir", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "has no unit 'Nope'" in missing.output

    out = tmp_path / "hf"
    exported = runner.invoke(app, ["export", str(path), str(out)])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["exported"] == str(out)
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    vocab = get_scale("micro").vocab_size
    idx = torch.randint(0, min(vocab, 100), (1, 5), generator=torch.Generator().manual_seed(0))
    generated = model.generate(idx, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 9) and torch.equal(generated[:, :5], idx)
    assert all(n in (out / "gau_design.py").read_text() for n in names)
