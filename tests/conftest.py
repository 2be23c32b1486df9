"""Fixtures shared by all tests: float32 and float64; CPU and, when present, CUDA."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    ]
)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)
