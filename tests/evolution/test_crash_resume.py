"""A run killed with SIGKILL at any point resumes with no lost or duplicated design."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from model_discovery.evolution import EvolutionTree
from tests.evolution.integrity import integrity_problems

N = 120

# Adds a chain of designs (each the child of the previous one) with proposal, review and check:
# the same function is the killed worker and the resumed run.
WORKER = textwrap.dedent('''
    import sys
    from model_discovery.agents.types import Proposal, Review
    from model_discovery.evolution import EvolutionTree
    from model_discovery.gau import load_seed

    def run(url, n):
        tree = EvolutionTree(url)
        seed = load_seed("gpt2")
        tree.add_design(seed, check={"passed": True, "seconds": 0.1})
        parent = "gpt2"
        for i in range(n):
            d = seed.model_copy(deep=True)
            d.name, d.parents = f"step{i}", [parent]
            d.units["GeluMLP"].hparams["mult"] = 100 + i
            prop = Proposal(title=f"step {i}", motivation="m", change="c", operator="hparam",
                            parents=[parent], references=["gpt2"])
            rec = tree.add_design(d, prop, [Review(rating=3, accept=True)],
                                  {"passed": True, "seconds": 0.01})
            parent = rec.name
        tree.close()

    if __name__ == "__main__":
        run(sys.argv[1], int(sys.argv[2]))
''')


def _check_integrity(tree: EvolutionTree, expect_complete: bool) -> int:
    assert integrity_problems(tree) == []
    names = [d.name for d in tree.list_designs()]
    assert len(names) == len(set(names))
    assert len(tree.fingerprints()) == len(names)
    steps = names[1:]
    assert names[0] == "gpt2" and steps == [f"step{i}" for i in range(len(steps))]  # no gap
    for name in steps:
        # every committed design has all of its parts
        assert len(tree.proposals(name)) == 1 and len(tree.reviews(name)) == 1 and len(tree.checks(name)) == 1
        assert tree.references(name) == ([] if name == "step0" else ["gpt2"])  # a parent is no reference
    if expect_complete:
        assert len(steps) == N
    return len(steps)


def test_sigkill_mid_run_then_resume(tree_url: str, tmp_path) -> None:  # noqa: ANN001
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), tree_url, str(N)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = EvolutionTree(tree_url)
    deadline = time.monotonic() + 60
    try:
        while watcher.count() < 25:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "worker died"
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    watcher.close()

    reopened = EvolutionTree(tree_url)
    done = _check_integrity(reopened, expect_complete=False)
    assert 24 <= done < N, "the worker was not killed mid-way"
    # resume: the same run simply starts over; designs already committed are not duplicated
    namespace: dict = {}
    exec(compile(WORKER, str(script), "exec"), namespace)  # noqa: S102 - our own worker source
    namespace["run"](tree_url, N)
    _check_integrity(reopened, expect_complete=True)
    assert reopened.stats().designs == N + 1 and reopened.stats().max_generation == N
    reopened.close()
