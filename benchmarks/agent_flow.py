"""Agent-flow benchmark: design success (pass@k) and prompt size per role with a scripted LLM.

    .venv/bin/python benchmarks/agent_flow.py --designs 6

A local server speaking the OpenAI and Anthropic APIs (``tests/agents/fake_llm_server.py``)
plays the LLM behind every role; the agents reach it through the official SDKs, and each design
step runs the whole system path (``DiscoverySystem.design_step``: select, propose, review, plan,
implement unit by unit, the sandboxed check, debug rounds, commit) with a real tree and checker.

The scripted coder is a model that writes some units with a bug and fixes a bug only when the
prompt carries what it needs: a unit returning its hidden width is fixed when the prompt shows
the shape error *and* a traceback into the compiled module; a unit that looks at future tokens
is fixed when the prompt shows the check table with the causality row failing. Some ideas carry
two bugs (two debug rounds). So pass@1 measures how often first drafts pass, and pass@k how
often the debug loop's context lets the coder repair them within k check attempts.

Printed: per design its idea, outcome and check attempts; the usage ledger (calls, tokens, cost
per role, saved as ``usage.json`` in the run dir); the average prompt size per role (characters
of system prompt and messages, and the server's token count); last line
``agent_flow: pass@1=<x> pass@3=<y> designs=<n>``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scripted server lives with the tests

from model_discovery.config import SystemConfig  # noqa: E402
from model_discovery.system import BuildSystem, DiscoveryReport  # noqa: E402
from tests.agents.fake_llm_server import FakeLLMServer, RecordedRequest, Reply, role_of  # noqa: E402


@dataclass(frozen=True)
class Idea:
    """A channel mixer the scripted proposer suggests, and the bugs its first draft has."""

    name: str
    gated: bool
    act: str  # silu | gelu | relu2
    mult: float
    shift: bool = False  # mixes in the previous token (a causal token shift)
    bugs: tuple[str, ...] = ()  # "shape" (returns the hidden width), "leak" (sees future tokens)


IDEAS = (
    Idea("GatedSiluMLP", True, "silu", 2.5, bugs=("shape",)),
    Idea("ReluSqMLP", False, "relu2", 4.0),
    Idea("GeGLUMLP", True, "gelu", 2.5, bugs=("leak",)),
    Idea("ShiftMLP", False, "gelu", 4.0, shift=True, bugs=("leak",)),
    Idea("SiluMLP", False, "silu", 4.0),
    Idea("ShiftGLU", True, "silu", 2.0, shift=True, bugs=("shape", "leak")),
)


def idea_at(i: int) -> Idea:
    """The i-th idea; past the list, the same ideas again with another width (new names)."""
    base = IDEAS[i % len(IDEAS)]
    if i < len(IDEAS):
        return base
    round_ = i // len(IDEAS)
    return Idea(f"{base.name}{round_ + 1}", base.gated, base.act, base.mult + 0.5 * round_, base.shift, base.bugs)


def unit_source(idea: Idea, bugs: tuple[str, ...]) -> str:
    """The unit's source with the given bugs left in."""
    act = {"silu": "F.silu(self.w1(X))", "gelu": "F.gelu(self.w1(X))", "relu2": "F.relu(self.w1(X)) ** 2"}[idea.act]
    hidden = f"{act} * self.w3(X)" if idea.gated else act
    w3 = "        self.w3 = nn.Linear(d_model, hidden, bias=False)\n" if idea.gated else ""
    shift = ""
    if idea.shift:
        shift = ("        prev = F.pad(X, (0, 0, 0, 1))[:, 1:]\n" if "leak" in bugs
                 else "        prev = F.pad(X, (0, 0, 1, 0))[:, :-1]\n")
        shift += "        X = X + self.mix * prev\n"
    elif "leak" in bugs:
        shift = "        X = X + X.mean(dim=1, keepdim=True)\n"
    mix = "        self.mix = nn.Parameter(torch.full((d_model,), 0.5))\n" if idea.shift else ""
    out = "h" if "shape" in bugs else "self.w2(h)"
    return (f'"""{idea.name}: a {"gated " if idea.gated else ""}{idea.act} MLP of width {idea.mult} d_model."""\n\n'
            "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"
            "from model_discovery.gau.runtime import GAUBase\n\n\n"
            f"class {idea.name}(GAUBase):\n"
            f"    def __init__(self, d_model, block_loc, ctx=None, mult: float = {idea.mult}):\n"
            "        super().__init__(d_model, block_loc, ctx)\n"
            "        hidden = int(mult * d_model)\n"
            "        self.w1 = nn.Linear(d_model, hidden, bias=False)\n"
            f"{w3}        self.w2 = nn.Linear(hidden, d_model, bias=False)\n{mix}\n"
            "    def _forward(self, X, **Z):\n"
            f"{shift}        h = {hidden}\n"
            f"        return {out}, {{}}\n")


class ScriptedLLM:
    """The responder of the fake server: one idea per design step, answered role by role."""

    def __init__(self) -> None:
        self.step = -1
        self.bugs: tuple[str, ...] = ()
        self.replaces = "GeluMLP"
        self.lock = threading.Lock()

    @property
    def idea(self) -> Idea:
        return idea_at(max(self.step, 0))

    def __call__(self, req: RecordedRequest) -> Reply:
        reply = self._answer(req)
        size = len(req.system) + sum(len(m["content"]) for m in req.conversation)
        reply.prompt_tokens, reply.completion_tokens = max(1, size // 4), max(1, len(reply.text) // 4)
        return reply  # token counts like a tokenizer's, about 4 characters a token

    def _answer(self, req: RecordedRequest) -> Reply:
        role = role_of(req)
        prompt = req.last_user_text
        with self.lock:
            if role == "proposer":
                return self._propose(req)
            if role == "reviewer":
                return Reply.json({"rating": 4, "accept": True, "novelty": 0.5, "reasons": ["sound and causal"],
                                   "suggestions": []})
            if role == "planner":
                return Reply.json({"root": None, "units": [self._unit_plan()], "notes": "one unit"})
            if role == "coder":
                return self._code(prompt)
            if role == "observer":
                return Reply(text="no note")
        return Reply(status=400, error_message=f"scripted LLM: unknown role in {req.system[:60]!r}")

    def _propose(self, req: RecordedRequest) -> Reply:
        if len(req.conversation) == 1:  # a new design step (refinement rounds continue the conversation)
            self.step += 1
            self.bugs = self.idea.bugs
        parent = req.conversation[0]["content"]
        mlp = re.search(r"\bmlp=(\w+)", parent)
        self.replaces = mlp.group(1) if mlp else "GeluMLP"
        idea = self.idea
        return Reply.json({"title": f"{idea.name} channel mixer", "motivation": "a cheaper or gated MLP",
                           "change": f"Replace {self.replaces} by {idea.name}.", "operator": "llm",
                           "units": [self._unit_plan()]})

    def _unit_plan(self) -> dict:
        idea = self.idea
        return {"name": idea.name, "role": "channel_mixer", "children": {}, "replaces": self.replaces,
                "description": f"{'gated ' if idea.gated else ''}{idea.act} MLP, hidden {idea.mult} d_model"
                               + (", plus a learned mix of the previous token" if idea.shift else "")}

    def _code(self, prompt: str) -> Reply:
        if "Debug mode" in prompt:
            fixable = {
                "shape": "returned Y of shape" in prompt and "# Traceback (lines of the compiled design module)" in prompt,
                "leak": re.search(r"^causality\s+FAIL", prompt, re.M) is not None,
            }
            first = next((b for b in self.bugs if fixable[b]), None)  # one bug per round, as a model would
            if first is not None:
                self.bugs = tuple(b for b in self.bugs if b != first)
        idea = self.idea
        return Reply.json({"name": idea.name, "role": "channel_mixer", "source": unit_source(idea, self.bugs),
                           "children": {}, "hparams": {"mult": idea.mult},
                           "rationale": f"{idea.act} MLP" + (f"; fixing {', '.join(idea.bugs)}" if idea.bugs else "")})


def write_specs(folder: Path, server: FakeLLMServer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for role in ("proposer", "reviewer", "planner", "coder", "observer"):
        provider = "anthropic" if role == "reviewer" else "openai_compatible"
        base = server.anthropic_base_url if provider == "anthropic" else server.openai_base_url
        model = "claude-sonnet-4-6" if provider == "anthropic" else "gpt-4o"
        (folder / f"{role}.yaml").write_text(f"role: {role}\nprovider: {provider}\nmodel: {model}\n"
                                             f"base_url: {base}\nretries: 1\nbackoff_s: 0.01\n"
                                             + ("max_rounds: 3\n" if role in ("reviewer", "coder") else ""))
    return folder


def prompt_sizes(requests: list[RecordedRequest]) -> dict[str, tuple[int, float]]:
    """Role -> (requests, mean characters of system prompt plus messages)."""
    by_role: dict[str, list[int]] = {}
    for r in requests:
        size = len(r.system) + sum(len(m["content"]) for m in r.conversation)
        by_role.setdefault(role_of(r) or "?", []).append(size)
    return {role: (len(v), statistics.mean(v)) for role, v in sorted(by_role.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", type=int, default=6, help="design steps")
    ap.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="agent_flow-"))
    if out.exists() and args.out:
        shutil.rmtree(out)
    script = ScriptedLLM()
    with FakeLLMServer(responder=script) as server:
        specs = write_specs(out / "agents", server)
        system = BuildSystem(SystemConfig(run_dir=out / "run", seeds=["gpt2"], agent_spec_dir=specs,
                                          flow={"n_references": 1}))
        t0 = time.perf_counter()
        try:
            system.bootstrap()
            report = DiscoveryReport(request="benchmark")
            for i in range(args.designs):
                t = time.perf_counter()
                o = system.design_step("discover a channel mixer that lowers loss at equal parameters")
                report.outcomes.append(o)
                print(f"design {i + 1}: {idea_at(i).name:<14} bugs {','.join(idea_at(i).bugs) or '-':<10} "
                      f"{o.status:<9} check attempts {o.check_attempts}  {time.perf_counter() - t:.1f} s  {o.design}")
            usage = system.usage.summary()
            per_design = {d: t.prompt_tokens + t.completion_tokens for d, t in system.usage.by_design().items()}
        finally:
            system.close()
        wall = time.perf_counter() - t0
        sizes = prompt_sizes(server.requests)
    print(f"\n{len(report.outcomes)} designs in {wall:.0f} s; {usage}")
    print("tokens per design: " + ", ".join(f"{d} {n:,}" for d, n in per_design.items()))
    print("average prompt size per role (system prompt + messages):")
    for role, (n, chars) in sizes.items():
        print(f"  {role:<9} {n:>3} requests  {chars:>8,.0f} chars  ~{chars / 4:>7,.0f} tokens")
    passes = report.pass_at_k()
    print(json.dumps({"pass_at_k": passes, "designs": len(report.outcomes),
                      "statuses": [o.status for o in report.outcomes],
                      "prompt_chars": {r: round(c) for r, (_, c) in sizes.items()}}))
    print(f"agent_flow: pass@1={passes.get(1, 0.0):.2f} pass@3={passes.get(3, max(passes.values(), default=0.0)):.2f} "
          f"designs={len(report.outcomes)}")


if __name__ == "__main__":
    main()
