"""The mark of tests that need a CUDA device: skipped, with the reason, where PyTorch sees none.

CI and kiosks have no GPU, so these tests skip there; on a GPU machine ``pytest -m gpu`` runs
them (README "Tests").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

Test = TypeVar("Test", bound=Callable[..., object])


def cuda_device() -> str | None:
    """The first CUDA device's name, or None without torch or without a device."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


CUDA_DEVICE = cuda_device()
SKIP_WITHOUT_CUDA = pytest.mark.skipif(CUDA_DEVICE is None,
                                       reason="needs a CUDA device; PyTorch sees none")


def needs_cuda(test: Test) -> Test:
    """Mark a test ``gpu`` and skip it where no CUDA device is visible."""
    return pytest.mark.gpu(SKIP_WITHOUT_CUDA(test))  # type: ignore[no-any-return]
