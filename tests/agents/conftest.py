"""Fixtures of the agent tests: the scripted local LLM server and the gpt2 seed."""

from __future__ import annotations

import pytest

from model_discovery.gau import load_seed
from model_discovery.records import Design
from tests.agents.fake_llm_server import FakeLLMServer


@pytest.fixture
def server():
    with FakeLLMServer() as s:
        yield s


@pytest.fixture(scope="module")
def gpt2() -> Design:
    return load_seed("gpt2")
