"""Hugging Face export: load with AutoModelForCausalLM, identical logits, greedy generate with the
design's decode cache (and without it where decoding is not exact)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from model_discovery.gau import DesignError, build_lm, get_scale, list_seeds, load_seed
from model_discovery.gau.hf_export import export_hf
from tests.gau.decoding import greedy_uncached

SEEDS = list_seeds()
MICRO = get_scale("micro")
VOCAB = 96


@pytest.mark.parametrize("seed", SEEDS)
def test_export_round_trip_and_generate(seed: str, tmp_path) -> None:
    torch.manual_seed(0)
    design = load_seed(seed)
    source = build_lm(design, MICRO, vocab_size=VOCAB).eval()
    out = export_hf(design, MICRO, tmp_path / f"{seed}_hf", state_dict=source.state_dict())
    for name in ("config.json", "configuration_modis.py", "modeling_modis.py", "gau_design.py",
                 "model.safetensors", "generation_config.json", "design.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_modis.ModisForCausalLM"
    assert config["fingerprint"] == design.fingerprint() and config["vocab_size"] == VOCAB

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    idx = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = source(idx), model(input_ids=idx).logits
    assert torch.equal(expected, got)

    fed: list[int] = []
    model.model.register_forward_pre_hook(lambda module, args: fed.append(args[0].size(1)))
    gen = model.generate(idx[:, :6], max_new_tokens=4, do_sample=False)
    assert torch.equal(gen, greedy_uncached(source, idx[:, :6], 4))
    assert config["use_cache"] and fed == [6, 1, 1, 1], "the prefix is recomputed"


def test_beam_search_reorders_the_cache(tmp_path) -> None:
    torch.manual_seed(0)
    design = load_seed("mamba2")
    out = export_hf(design, MICRO, tmp_path / "m", state_dict=build_lm(design, MICRO, vocab_size=VOCAB).state_dict())
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    idx = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(5))
    kwargs = {"max_new_tokens": 6, "do_sample": False, "num_beams": 3}
    assert torch.equal(model.generate(idx, **kwargs), model.generate(idx, use_cache=False, **kwargs))


def test_inexact_decoding_is_exported_without_cache(tmp_path) -> None:
    """A unit whose _step disagrees with its _forward: export turns the cache off, generate stays right."""
    design = load_seed("gpt2")
    attention = design.units["CausalSelfAttention"]
    wrong = attention.source + (
        "\n    def _step(self, X, state, **Z):\n"
        "        return self._forward(X)  # forgets the earlier positions\n")
    design = design.model_copy(update={"units": {**design.units,
                                                 "CausalSelfAttention": attention.model_copy(update={"source": wrong})}})
    torch.manual_seed(0)
    source = build_lm(design, MICRO, vocab_size=VOCAB).eval()
    out = export_hf(design, MICRO, tmp_path / "g", state_dict=source.state_dict())
    assert json.loads((out / "config.json").read_text())["use_cache"] is False
    assert json.loads((out / "generation_config.json").read_text())["use_cache"] is False
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    idx = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(6))
    assert torch.equal(model.generate(idx, max_new_tokens=4, do_sample=False), greedy_uncached(source, idx, 4))


def test_export_with_tokenizer_and_loss(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 50 + ["import math\nprint(math.pi)\n"] * 50,
                            trainer=trainer)
    design = load_seed("llama")
    out = export_hf(design, MICRO, tmp_path / "llama_tok", tokenizer=tok)
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == tok.get_vocab_size()
    assert config["eos_token_id"] == tok.token_to_id("<|endoftext|>")

    hf_tok = AutoTokenizer.from_pretrained(out)
    text = "def f(x):\n    return math.pi\n"
    assert hf_tok(text)["input_ids"] == tok.encode(text).ids
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    batch = hf_tok(text, return_tensors="pt")
    out_ = model(**batch, labels=batch["input_ids"])
    assert out_.loss is not None and torch.isfinite(out_.loss)
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 3


def test_export_rejects_mismatched_weights(tmp_path) -> None:
    design = load_seed("gpt2")
    state = build_lm(design, MICRO, vocab_size=VOCAB).state_dict()
    bad_shape = dict(state)
    bad_shape["blocks.0.mlp.fc.weight"] = torch.zeros(3, 3)
    with pytest.raises(DesignError, match=r"key 'blocks.0.mlp.fc.weight' has shape \(3, 3\)"):
        export_hf(design, MICRO, tmp_path / "a", state_dict=bad_shape)
    missing = {k: v for k, v in state.items() if k != "ln_f.weight"}
    with pytest.raises(DesignError, match="lacks key 'ln_f.weight'"):
        export_hf(design, MICRO, tmp_path / "b", state_dict=missing)


def test_two_designs_exported_to_folders_of_one_name_load_as_themselves(tmp_path) -> None:
    """transformers caches remote code by folder name; each export still loads its own design."""
    for i, seed in enumerate(("mamba2", "gpt2")):
        out = export_hf(load_seed(seed), MICRO, tmp_path / str(i) / "hf_out")
        model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
        assert type(model.model.blocks[0].mixer).__name__ == {"mamba2": "Mamba2Mixer", "gpt2": "CausalSelfAttention"}[seed]
