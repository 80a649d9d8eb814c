"""Builders of real run directories for the GUI tests: seeds, derived designs, results.

Trees are built for real through :class:`EvolutionTree`: library seeds, derived designs (a unit
swapped in from the catalogue, or a hyperparameter changed, under a new name with the parent
recorded), proposals, reviews, check reports and verification records with loss curves.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from streamlit.testing.v1 import AppTest

from model_discovery.app.common import RUN_DIR_KEY
from model_discovery.config import SystemConfig
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import Design, catalogue, list_seeds, load_seed
from model_discovery.records import CheckReport, CheckResult, Proposal, Review, TrainResult, VerifyResult

APP_DIR = Path(__file__).resolve().parents[2] / "model_discovery" / "app"
MAIN = APP_DIR / "main.py"


def check_report(name: str, passed: bool = True) -> CheckReport:
    """A check report as the checker writes it (every check named, with figures)."""
    checks = [CheckResult(name="parse", passed=True, seconds=0.01),
              CheckResult(name="forward", passed=True, seconds=0.4, figures={"shape": [2, 128, 64]}),
              CheckResult(name="causality", passed=passed, seconds=0.3, figures={"max_leak": 0.0 if passed else 0.2},
                          message="" if passed else "output at t depends on t+1")]
    return CheckReport(design=name, scale="micro", passed=passed, checks=checks,
                       first_error=None if passed else "causality: output at t depends on t+1",
                       total_seconds=sum(c.seconds for c in checks))


def verify_record(design: Design, scale: str, val: float, steps: int = 40) -> VerifyResult:
    """A verification record with train/val loss curves that fall towards ``val``."""
    train = [(s, s * 2048, val + 4.0 * math.exp(-s / 12)) for s in range(0, steps + 1, 4)]
    valc = [(s, s * 2048, val + 3.8 * math.exp(-s / 12)) for s in range(0, steps + 1, 10)]
    tr = TrainResult(n_params=98_304, n_params_total=229_376, steps=steps, max_steps=steps, tokens=steps * 2048,
                     completed=True, train_loss=train, val_loss=valc, final_val_loss=valc[-1][2],
                     tokens_per_s=51_000.0, peak_memory_bytes=300 * 2**20, wall_s=12.5, device="cpu",
                     dtype="float32")
    return VerifyResult(design=design.name, fingerprint=design.fingerprint(), scale=scale, status="ok", train=tr,
                        eval_metrics={"local/heldout_ppl": math.exp(val), "local/mc_acc": 0.3 + 0.01 * (6 - val),
                                      "local_ppl/bits_per_byte": val / 3.2, "local_nextline/acc": 0.25 + 0.02 * (6 - val)},
                        probe_scores={"recall": 0.5, "copy": 0.7}, final_val_loss=valc[-1][2],
                        tokens_per_s=51_000.0, peak_memory_bytes=300 * 2**20, wall_s=12.5)


def _of_role(design: Design, role: str) -> list[str]:
    return [n for n, u in design.units.items() if u.role == role]


def _swap_mixer(parent: Design, name: str) -> Design | None:
    """``parent`` with its first slot-free mixer replaced by another catalogue mixer."""
    mixers = [n for n in _of_role(parent, "mixer") if not parent.units[n].children]
    options = [u for n, u in sorted(catalogue("mixer").items()) if not u.slots and n not in parent.units]
    if not mixers or not options:
        return None
    old, new = mixers[0], options[0]
    units = {n: u.model_copy(deep=True) for n, u in parent.units.items() if n != old}
    for u in units.values():
        u.children = {slot: (new.name if child == old else child) for slot, child in u.children.items()}
    units[new.name] = new.spec()
    return Design(name=name, root=parent.root, units=units, parents=[parent.name],
                  summary=f"{parent.name} with {old} swapped for {new.name}")


def _hparam_child(parent: Design, name: str, value: float) -> Design:
    """``parent`` with the first numeric hyperparameter of its channel mixer (or any unit) set to ``value``."""
    units = {n: u.model_copy(deep=True) for n, u in parent.units.items()}
    order = _of_role(parent, "channel_mixer") + _of_role(parent, "mixer") + list(units)
    for uname in order:
        for key, v in units[uname].hparams.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                units[uname].hparams[key] = value
                return Design(name=name, root=parent.root, units=units, parents=[parent.name],
                              summary=f"{parent.name} with {uname}.{key}={value}")
    raise AssertionError(f"{parent.name}: no numeric hyperparameter to change")


def build_tree(run_dir: Path, n_derived: int, *, n_results: int | None = None, seed: int = 0) -> dict[str, object]:
    """Fill ``run_dir/tree.sqlite`` with every seed plus ``n_derived`` derived designs.

    Derived designs get a proposal, two review rounds and a check report (one in ten fails its
    check); ``n_results`` of them (default: half) get a micro verification, the best few a 14M one.
    Returns the names added and a few facts the tests assert on.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(SystemConfig(run_dir=run_dir, steps=3, ladder=["micro", "14M"],
                                                      budgets={"14M": 4}).to_yaml())
    rng = random.Random(seed)
    tree = EvolutionTree(run_dir / "tree.sqlite")
    designs: list[Design] = []
    for s in list_seeds():
        d = load_seed(s)
        tree.add_design(d, check=check_report(d.name), operator="seed")
        designs.append(d)
    swapped = None
    for i in range(n_derived):
        parent = designs[rng.randrange(len(designs))]
        child = None
        if i == 0:  # the first derived design swaps gpt2's attention for another catalogue mixer
            parent = next(d for d in designs if d.name == "gpt2")
            child = _swap_mixer(parent, "gpt2-swap-0")
        operator = "swap" if child is not None else "hparam"
        if child is None:
            child = _hparam_child(parent, f"{parent.name.split('-')[0]}-v{i}", 1000.5 + i)
        else:
            swapped = child.name
        proposal = Proposal(title=f"Variant {i} of {parent.name}", motivation="Probe a nearby design.",
                            change=child.summary, operator=operator, parents=[parent.name],
                            references=[designs[0].name])
        reviews = [Review(rating=2.5, accept=False, reasons=["too close to its parent"], suggestions=["change more"]),
                   Review(rating=4.0, accept=True, novelty=0.6, reasons=["small, attributable change"])]
        passed = i % 10 != 9
        tree.add_design(child, proposal=proposal, reviews=reviews, check=check_report(child.name, passed),
                        operator=operator)
        if passed:
            designs.append(child)
    n_results = len(designs) // 2 if n_results is None else n_results
    verified = designs[:n_results]
    for j, d in enumerate(verified):
        val = 3.0 + 2.0 * rng.random()
        tree.add_result(d.name, "micro", verify_record(d, "micro", val), fitness=round(6.0 - val, 4))
        if j < 3:
            tree.add_result(d.name, "14M", verify_record(d, "14M", val - 0.5), fitness=round(6.5 - val, 4))
    names = [n["name"] for n in tree.graph().model_dump()["nodes"]]
    tree.close()
    return {"names": names, "verified": [d.name for d in verified], "swapped": swapped,
            "seeds": list_seeds()}


def load(run_dir: Path, page: str, **state: object) -> AppTest:
    """Run the app with ``run_dir`` picked, switch to ``page``, and check it raised nothing."""
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.session_state[RUN_DIR_KEY] = str(run_dir)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
