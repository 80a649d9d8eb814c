"""Structured outputs: ask for JSON matching a pydantic model, extract it robustly, validate it,
and re-ask with the validation error when the answer is malformed (a bounded number of times).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from model_discovery.agents.llm import ChatBackend, ChatResponse
from model_discovery.records import Proposal

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON|javascript)?\s*\n?(.*?)```", re.S)


class StructuredOutputError(RuntimeError):
    """The model did not produce valid structured output within the allowed repairs; one line."""


#: A proposal as the proposer writes it: every field of Proposal except the built ``design``.
ProposalDraft = create_model(  # type: ignore[call-overload]
    "ProposalDraft",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A change to one or two parent designs (without the built design).",
    **{n: (f.annotation, f) for n, f in Proposal.model_fields.items() if n != "design"},
)


def _balanced_objects(text: str) -> list[str]:
    """Top-level ``{...}`` spans of ``text``, string- and escape-aware, in order of appearance."""
    spans: list[str] = []
    depth, start, in_str, esc = 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start:i + 1])
    return spans


def extract_json(text: str) -> Any:
    """The JSON value in a model reply: the whole reply, a fenced block, or the first object that
    parses inside surrounding prose. Raises ``ValueError`` (one line) when there is none."""
    stripped = text.strip()
    candidates: list[str] = [stripped]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    candidates += sorted(_balanced_objects(text), key=len, reverse=True)
    last: Exception | None = None
    for cand in candidates:
        if not cand:
            continue
        try:
            return json.loads(cand)
        except json.JSONDecodeError as exc:
            last = exc
    if last is None or "{" not in text:
        raise ValueError("reply contains no JSON object")
    raise ValueError(f"reply contains no valid JSON object ({last.msg} at line {last.lineno} "
                     f"column {last.colno})")


def _error_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"field {loc}: {err.get('msg')}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def schema_text(model: type[BaseModel]) -> str:
    """The model's JSON schema, compact, for prompts."""
    return json.dumps(model.model_json_schema(), separators=(",", ":"))


def parse_structured(text: str, model: type[M], check: Callable[[M], str | None] | None = None) -> M:
    """Extract and validate; raises ``ValueError`` with a one-line reason to send back."""
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_error_line(exc)) from exc
    if check is not None:
        problem = check(obj)
        if problem:
            raise ValueError(problem)
    return obj


def ask_structured(backend: ChatBackend, system: str, user: str, model: type[M], *,
                   max_repairs: int | None = None, check: Callable[[M], str | None] | None = None,
                   design: str | None = None,
                   history: list[dict[str, str]] | None = None) -> tuple[M, list[ChatResponse]]:
    """Ask for a JSON object matching ``model``; on a malformed or invalid reply, show the model
    its answer's problem and ask again, at most ``max_repairs`` times (default: the spec's).

    ``history`` (user / assistant messages) comes before ``user``: earlier turns of the same
    conversation, e.g. the proposer's previous proposals and the reviews they received.

    ``check`` adds domain validation beyond the schema (return a one-line problem or None).
    Returns the validated object and every response (for inspection / accounting).
    """
    repairs = backend.spec.max_repairs if max_repairs is None else max_repairs
    prompt = (f"{user}\n\nAnswer with ONE JSON object (no prose) that validates against this JSON "
              f"schema:\n{schema_text(model)}")
    messages: list[dict[str, str]] = [*(history or []), {"role": "user", "content": prompt}]
    responses: list[ChatResponse] = []
    problem = ""
    for _ in range(repairs + 1):
        resp = backend.chat(system, messages, design=design)
        responses.append(resp)
        try:
            return parse_structured(resp.text, model, check), responses
        except ValueError as exc:
            problem = str(exc)
        messages = messages + [
            {"role": "assistant", "content": resp.text or "(empty)"},
            {"role": "user", "content": f"Your answer is not valid: {problem}. Reply again with only "
                                        f"the corrected JSON object."},
        ]
    raise StructuredOutputError(f"{backend.spec.label()}: no valid {model.__name__} after "
                                f"{len(responses)} answers: {problem}")
