import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton decides at import time whether its own @jit helpers (tl.sigmoid, scan combiners, …) are
    # interpreted; torch can import triton early (e.g. under the meta device), so fix the mode up front.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
