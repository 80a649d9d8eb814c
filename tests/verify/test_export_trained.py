"""A verified (trained) design exports to a Hugging Face folder that loads and generates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_discovery.gau import DesignError, get_scale, load_seed
from model_discovery.gau.hf_export import export_verified
from model_discovery.records import DataConfig
from model_discovery.verify import verify_design


def test_trained_weights_and_tokenizer_export(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    design = load_seed("gpt2")
    record = verify_design(design, "micro", tmp_path / "v", data_config=DataConfig(max_bytes=400_000),
                           eval=False, probes=False, wandb=False,
                           train_overrides={"train_tokens": 4096, "final_eval_batches": 2})
    assert record.status == "ok", record.error
    out = export_verified(design, tmp_path / "v", tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(out)
    trained = load_file(str(tmp_path / "v" / "train" / "model.safetensors"))
    assert torch.equal(model.model.wte.weight, trained["wte.weight"])  # the trained weights, not a fresh init
    ids = tok("def main():\n    return", return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape == (1, ids.shape[1] + 5) and model.config.vocab_size == get_scale("micro").vocab_size


def test_export_refuses_a_folder_of_another_design(tmp_path: Path) -> None:
    (tmp_path / "verify_result.json").write_text('{"design": "llama", "fingerprint": "x", "status": "ok"}')
    with pytest.raises(DesignError, match="verifies design 'llama', not 'gpt2'"):
        export_verified(load_seed("gpt2"), tmp_path, tmp_path / "hf")
