"""The replay benchmark end to end on a small synthetic table: it runs, compares with random on
paired streams, and ends with its machine-readable line."""

from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

from model_discovery.gau import load_seed

ROOT = Path(__file__).resolve().parents[2]


def _table(folder: Path) -> None:
    """gpt2 and llama seeds, then MLP-width variants of each; loss falls as the width nears 6."""
    rows, edges, table = [], [], []
    for seed in ("gpt2", "llama"):
        base = load_seed(seed)
        rows.append({"fingerprint": base.fingerprint(), "name": seed, "generation": 0, "operator": "seed",
                     "parents": [], "design": json.loads(base.to_json(indent=None))})
        unit = next(n for n, u in base.units.items() if "mult" in u.hparams)
        for m in range(2, 11):
            if m == base.units[unit].hparams["mult"]:
                continue
            d = base.model_copy(deep=True)
            d.name = f"{seed}-m{m}"
            d.units[unit].hparams["mult"] = m
            rows.append({"fingerprint": d.fingerprint(), "name": d.name, "generation": 1, "operator": "hparam",
                         "parents": [base.fingerprint()], "design": json.loads(d.to_json(indent=None))})
            edges.append({"parent": base.fingerprint(), "operator": "hparam", "child": d.fingerprint(),
                          "found_by": "enum"})
    for i, r in enumerate(rows):
        m = int(r["name"].rsplit("m", 1)[-1]) if "-m" in r["name"] else 4
        for seed in range(3):
            for fid, shift in (("short", 1.0), ("half", 0.5), ("full", 0.0)):
                loss = 5.0 + shift + abs(m - 6) / 20 + (0.1 if r["name"].startswith("gpt2") else 0) \
                    + 0.01 * ((seed + i) % 3 - 1)
                table.append({"fingerprint": r["fingerprint"], "design": r["name"], "fidelity": fid, "seed": seed,
                              "val_loss": loss, "bpb": loss / 2, "tokens": 100, "seconds": 1.0})
    folder.mkdir(parents=True)
    with gzip.open(folder / "designs.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    for name, items in (("edges.csv", edges), ("table.csv", table)):
        with open(folder / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(items[0]))
            w.writeheader()
            w.writerows(items)


def test_replay_compares_strategies_on_a_table(tmp_path: Path) -> None:
    _table(tmp_path / "t")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selector_replay.py"), "--table",
                          str(tmp_path / "t"), "--repeats", "12", "--budget", "6", "12", "--workers", "1"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "19 designs" in out and "random+sh" in out and "evo-nonoise" in out
    assert re.search(r"short~full \+1\.000", out)  # the synthetic fidelities rank designs alike
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"selector_replay: verif_ratio=(\S+) p=(\S+) rho=(\S+) designs=19", last)
    assert m, last
    assert float(m.group(3)) == 1.0
