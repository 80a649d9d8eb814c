"""Design data: JSON round-trip, fingerprint, structure errors, compose errors."""

from __future__ import annotations

import pytest
import torch

from model_discovery.gau import Design, DesignError, UnitSpec, compile_design, load_seed
from model_discovery.gau.compose import load_module

BLOCK_SRC = '''
class Blk(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None):
        super().__init__(d_model, block_loc, ctx)
        self.mixer = self.build_child("mixer")

    def _forward(self, X, **Z):
        h, Z = self.mixer(X, **Z)
        return X + h, Z
'''


def mixer_src(name: str, helper: str = "") -> str:
    helper_def = f"\n\ndef {helper}(x):\n    return x\n" if helper else ""
    return helper_def + f'''
class {name}(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None):
        super().__init__(d_model, block_loc, ctx)

    def _forward(self, X, **Z):
        return X * 0.5, {{}}
'''


def units(**extra: UnitSpec) -> dict[str, UnitSpec]:
    base = {"Blk": UnitSpec(role="block", source=BLOCK_SRC, children={"mixer": "Mix"}),
            "Mix": UnitSpec(role="mixer", source=mixer_src("Mix"))}
    base.update(extra)
    return base


def test_json_round_trip_keeps_everything() -> None:
    design = load_seed("mamba2")
    again = Design.from_json(design.to_json())
    assert again == design
    assert again.fingerprint() == design.fingerprint()


def test_save_and_load(tmp_path) -> None:
    design = load_seed("llama")
    path = design.save(tmp_path / "d" / "llama.json")
    assert Design.load(path) == design


def test_fingerprint_ignores_name_and_comments_but_not_code() -> None:
    design = load_seed("gpt2")
    renamed = design.model_copy(update={"name": "other", "parents": ["gpt2"]})
    assert renamed.fingerprint() == design.fingerprint()
    unit = design.units["GeluMLP"]
    commented = unit.model_copy(update={"source": "# a comment\n" + unit.source})
    same = design.model_copy(update={"units": {**design.units, "GeluMLP": commented}})
    assert same.fingerprint() == design.fingerprint()
    changed = unit.model_copy(update={"hparams": {"mult": 2}})
    other = design.model_copy(update={"units": {**design.units, "GeluMLP": changed}})
    assert other.fingerprint() != design.fingerprint()


def test_seeds_have_distinct_fingerprints() -> None:
    from model_discovery.gau import list_seeds

    prints = {load_seed(s).fingerprint() for s in list_seeds()}
    assert len(prints) == len(list_seeds())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda u: u["Blk"].children.update(mixer="Nope"), "slot 'mixer' names unknown unit 'Nope'"),
    (lambda u: u["Mix"].children.update(loop="Blk"), "cycle in unit tree: Blk -> Mix -> Blk"),
    (lambda u: u.update(Lonely=UnitSpec(role="norm", source=mixer_src("Lonely"))),
     "unit 'Lonely' is not reachable from root 'Blk'"),
    (lambda u: u.update(Blk=u["Blk"].model_copy(update={"role": "mixer"})),
     "root unit 'Blk' has role 'mixer', expected 'block'"),
])
def test_structure_errors_are_clear(mutate, message: str) -> None:
    spec = units()
    mutate(spec)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Design(name="bad", root="Blk", units=spec)
    text = Design.model_construct(name="bad", root="Blk", units=spec).model_dump_json()
    with pytest.raises(DesignError) as info:
        Design.from_json(text, origin="bad.json")
    assert str(info.value).startswith("bad.json: invalid design:") and "\n" not in str(info.value)


def test_unknown_root_is_named() -> None:
    with pytest.raises(ValueError, match="root 'Gone' is not among units"):
        Design(name="bad", root="Gone", units=units())


def test_compose_missing_class_names_the_unit() -> None:
    design = Design(name="d", root="Blk", units=units(Mix=UnitSpec(role="mixer", source=mixer_src("Other"))))
    with pytest.raises(DesignError, match="unit Mix: source defines no class named 'Mix'"):
        compile_design(design)


def test_compose_name_collision_names_both_units() -> None:
    spec = units(Mix=UnitSpec(role="mixer", source=mixer_src("Mix", helper="shared_helper"),
                              children={"inner": "Mix2"}),
                 Mix2=UnitSpec(role="mixer", source=mixer_src("Mix2", helper="shared_helper")))
    design = Design(name="d", root="Blk", units=spec)
    with pytest.raises(DesignError, match="unit Mix2: top-level name 'shared_helper' is already defined by unit Mix"):
        compile_design(design)


def test_compose_runtime_name_collision() -> None:
    spec = units(Mix=UnitSpec(role="mixer", source=mixer_src("Mix") + "\n\nclass RMSNorm:\n    pass\n"))
    with pytest.raises(DesignError, match="unit Mix: top-level name 'RMSNorm' is already defined by <runtime>"):
        compile_design(Design(name="d", root="Blk", units=spec))


def test_compose_syntax_error_names_the_unit() -> None:
    spec = units(Mix=UnitSpec(role="mixer", source="class Mix(GAUBase):\n    def broken(:\n"))
    with pytest.raises(DesignError, match="unit Mix: syntax error line 2"):
        compile_design(Design(name="d", root="Blk", units=spec))


def test_compiled_module_is_self_contained() -> None:
    source = compile_design(load_seed("deltanet"))
    assert "model_discovery" not in source.split('"""', 2)[2]
    module = load_module(source, "deltanet_check")
    lm = module.build_lm(64, 1, 32, 16)
    assert lm(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 32)
