import pytest
import torch

from models.devices import resolve_device
from models.errors import ReconInputError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_bad_devices_are_named():
    with pytest.raises(ReconInputError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ReconInputError, match="CUDA is not available"):
            resolve_device("cuda:0")
