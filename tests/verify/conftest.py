"""Fixtures shared by the verification tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tests share a small machine, and results stay bit-reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
