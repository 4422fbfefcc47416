"""Device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> ``torch.device``."""

import torch

from models.errors import ReconInputError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU when there is one, else the CPU; an explicit CUDA
    device on a machine without CUDA is an error, not a silent fall-back."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ReconInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReconInputError(f"device {name!r} requested but CUDA is not available")
    return device


def cpu_has_native_bf16() -> bool:
    """True on a CPU with bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast is faster
    than float32; elsewhere it is emulated and slower."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)
