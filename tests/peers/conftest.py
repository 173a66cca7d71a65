"""What every peer test shares: the peers (Quantus, pytorch-grad-cam's cases) reseed torch's global generator, so
each test runs on a fork of it and leaves the other tests' randomness as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _own_rng() -> Iterator[None]:
    with torch.random.fork_rng():
        yield
