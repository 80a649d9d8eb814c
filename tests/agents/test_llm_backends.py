"""Chat backends through the real OpenAI / Anthropic SDKs against the local scripted server."""

from __future__ import annotations

import time

import pytest

from model_discovery.agents.llm import AnthropicChat, LLMError, OpenAIChat, make_backend, retry_after_seconds
from model_discovery.agents.structured import ProposalDraft, StructuredOutputError, ask_structured, extract_json
from model_discovery.agents.usage import UsageLedger
from model_discovery.records import Review
from tests.agents import scripted_answers as A
from tests.agents.fake_llm_server import FakeLLMServer, Reply, spec_for

PROVIDERS = ["openai", "anthropic", "openai_compatible"]


class RecordingSleep:
    """Records requested waits and sleeps a capped real amount."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(min(seconds, 0.02))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_call_usage_and_cost(server, provider):
    ledger = UsageLedger()
    backend = make_backend(spec_for(server, "observer", provider=provider, temperature=0.3), ledger=ledger)
    assert isinstance(backend, AnthropicChat if provider == "anthropic" else OpenAIChat)
    server.push(Reply(text="a short note", prompt_tokens=1000, completion_tokens=200))
    with ledger.design_scope("design-7"):
        resp = backend.chat("be brief", [{"role": "user", "content": "hello"}])
    assert resp.text == "a short note" and resp.attempts == 1
    req = server.requests[0]
    assert req.api == ("anthropic" if provider == "anthropic" else "openai")
    assert req.system == "be brief" and req.last_user_text == "hello"
    assert req.body["temperature"] == 0.3 and req.body["max_tokens"] == 4096
    (rec,) = ledger.records
    assert (rec.role, rec.design, rec.prompt_tokens, rec.completion_tokens) == ("observer", "design-7", 1000, 200)
    # gpt-4o and claude-sonnet-4-6 are in the price table; a local model is accounted at zero cost
    expected = {"openai": (1000 * 2.5 + 200 * 10.0) / 1e6, "openai_compatible": 0.0,
                "anthropic": (1000 * 3.0 + 200 * 15.0) / 1e6}[provider]
    assert rec.usd == pytest.approx(expected) and rec.priced == (provider != "openai_compatible")
    assert ledger.by_design()["design-7"].usd == pytest.approx(expected)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_rate_limit_respects_retry_after_then_succeeds(server, provider):
    sleep = RecordingSleep()
    ledger = UsageLedger()
    backend = make_backend(spec_for(server, "reviewer", provider=provider), ledger=ledger, sleep=sleep)
    server.push(Reply.rate_limit(retry_after="2"), Reply.json(A.REVIEW))
    review, responses = ask_structured(backend, "review", "the proposal", Review)
    assert review.rating == 4 and review.accept
    assert len(server.requests) == 2
    assert sleep.waits == [2.0]  # Retry-After wins over the 0.01 s backoff
    assert responses[0].attempts == 2
    assert ledger.total().attempts == 2 and ledger.total().calls == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_server_errors_back_off_exponentially_then_give_up(server, provider):
    sleep = RecordingSleep()
    backend = make_backend(spec_for(server, "coder", provider=provider, retries=2, backoff_s=0.01,
                                    max_backoff_s=1.0), sleep=sleep)
    server.push(Reply.server_error(500), Reply.server_error(503), Reply(text="ok"))
    assert backend.chat("s", [{"role": "user", "content": "u"}]).text == "ok"
    assert len(sleep.waits) == 2 and sleep.waits[1] > sleep.waits[0] >= 0.01
    server.push(*[Reply.server_error(500)] * 3)
    with pytest.raises(LLMError, match=r"call failed after 3 attempts: HTTP 500") as err:
        backend.chat("s", [{"role": "user", "content": "u"}])
    assert "\n" not in str(err.value)


def test_client_errors_are_not_retried(server):
    backend = make_backend(spec_for(server, "coder"), sleep=RecordingSleep())
    server.push(Reply(status=400, error_message="bad request: context too long"))
    with pytest.raises(LLMError, match="HTTP 400"):
        backend.chat("s", [{"role": "user", "content": "u"}])
    assert len(server.requests) == 1


def test_timeout_is_retried(server):
    sleep = RecordingSleep()
    backend = make_backend(spec_for(server, "coder", timeout_s=0.3), sleep=sleep)
    server.push(Reply(text="slow", delay_s=1.0), Reply(text="fast"))
    assert backend.chat("s", [{"role": "user", "content": "u"}]).text == "fast"
    assert len(sleep.waits) == 1


def test_connection_refused_gives_one_line_error():
    with FakeLLMServer() as s:
        spec = spec_for(s, "coder", retries=1)
    backend = make_backend(spec, sleep=RecordingSleep())  # server is gone now
    with pytest.raises(LLMError, match="call failed after 2 attempts: APIConnectionError"):
        backend.chat("s", [{"role": "user", "content": "u"}])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_malformed_json_is_reasked_with_the_error(server, provider):
    ledger = UsageLedger()
    backend = make_backend(spec_for(server, "proposer", provider=provider), ledger=ledger)
    bad = dict(A.PROPOSAL)
    bad.pop("motivation")
    server.push(Reply(text='Here it is: {"title": "x", '), Reply.json(bad), Reply.json(A.PROPOSAL, prose="Sure!",
                                                                                        fenced=True))
    draft, responses = ask_structured(backend, "propose", "parents...", ProposalDraft)
    assert draft.title == A.PROPOSAL["title"] and len(responses) == 3
    second = server.requests[1].conversation
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert "not valid" in second[-1]["content"] and "JSON" in second[-1]["content"]
    assert "field motivation: Field required" in server.requests[2].last_user_text
    assert ledger.total().calls == 3 and ledger.by_role()["proposer"].prompt_tokens == 3 * 120


def test_repairs_are_bounded(server):
    backend = make_backend(spec_for(server, "reviewer", max_repairs=1))
    server.push(Reply(text="no json here"), Reply.json({"rating": 9, "accept": True}))
    with pytest.raises(StructuredOutputError, match=r"no valid Review after 2 answers: field rating: "
                                                    r"Input should be less than or equal to 5"):
        ask_structured(backend, "s", "u", Review)


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Thoughts first.\n```json\n{"a": {"b": "}"}}\n```\nDone.') == {"a": {"b": "}"}}
    assert extract_json('I propose {"a": [1, 2], "s": "say \\"hi\\" {"} as above.') == {"a": [1, 2], "s": 'say "hi" {'}
    with pytest.raises(ValueError, match="no valid JSON object"):
        extract_json('{"a": 1,,}')
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("nothing")


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert 0 <= retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1


def test_reasoning_models_get_max_completion_tokens(server):
    reasoning = make_backend(spec_for(server, "coder", provider="openai", model="o3-mini"))
    server.push(Reply(text="ok"))
    reasoning.chat("s", [{"role": "user", "content": "hi"}])
    body = server.requests[-1].body
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body and "temperature" not in body
    other = make_backend(spec_for(server, "coder", provider="openai_compatible", model="local-reasoner"))
    refusal = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
               "Use 'max_completion_tokens' instead.")
    server.push(Reply(status=400, error_message=refusal), Reply(text="ok"), Reply(text="again"))
    assert other.chat("s", [{"role": "user", "content": "hi"}]).text == "ok"
    assert other.chat("s", [{"role": "user", "content": "hi"}]).text == "again"
    first, second, third = server.requests[-3:]
    assert first.body["max_tokens"] == 4096 and second.body["max_completion_tokens"] == 4096
    assert "max_tokens" not in third.body and third.body["temperature"] == 0.7  # remembered; temperature kept


def test_default_keys_go_only_to_their_own_provider(server):
    env = {"OPENAI_API_KEY": "sk-secret", "ANTHROPIC_API_KEY": "ant-secret", "MY_KEY": "mine"}
    for provider in PROVIDERS:
        backend = make_backend(spec_for(server, "observer", provider=provider), env=env)
        server.push(Reply(text="ok"))
        backend.chat("s", [{"role": "user", "content": "hi"}])
        sent = " ".join(server.requests[-1].headers.get(h, "") for h in ("authorization", "x-api-key"))
        assert "secret" not in sent, provider
    asked = make_backend(spec_for(server, "observer", provider="openai_compatible", api_key_env="MY_KEY"), env=env)
    server.push(Reply(text="ok"))
    asked.chat("s", [{"role": "user", "content": "hi"}])
    assert server.requests[-1].headers["authorization"] == "Bearer mine"
    from model_discovery.agents.spec import AgentSpec

    official = AgentSpec(role="coder", provider="openai", model="gpt-4o", base_url="https://api.openai.com/v1")
    assert official.api_key(env) == "sk-secret" and AgentSpec(role="coder", provider="openai", model="gpt-4o").key_env()
