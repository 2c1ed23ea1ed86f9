"""Shared fixtures: the fetched data and a single torch thread per test module that asks for it."""

from __future__ import annotations

import pytest
import torch

from scattermotion.data.fetched import ensure_data


@pytest.fixture(scope="module")
def single_thread():
    """Fetch the data (cached) and run the module on one torch thread (tiny models gain nothing from more,
    and two cores are shared with the OpenCV baselines)."""
    ensure_data()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
