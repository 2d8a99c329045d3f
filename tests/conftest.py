"""Shared test setup: quiet TensorFlow, and the real facades where this machine has them."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# ../shared/data/facades beside the checkout: real data on development and CI machines only.
FACADES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


@pytest.fixture
def facades_root():
    """The real CMP facades split, or a skip where this machine does not have it."""
    if not FACADES.is_dir():
        pytest.skip(f"real facades not present at {FACADES}")
    return FACADES
