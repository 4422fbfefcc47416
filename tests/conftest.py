"""Shared fixtures: a device list with the CPU always and CUDA when present."""

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def pytest_configure(config):
    # The suite's models are tiny: one intra-op thread avoids oversubscribing 2-core CI
    # machines (and the two-process DDP test), and keeps timings stable.
    torch.set_num_threads(1)
