"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""
import os
import pathlib

import pytest

from tests.helpers import ROOT_PATH

SHARED_DATA = pathlib.Path(os.environ.get("SHARED_DATA", ROOT_PATH.parent / "shared" / "data"))

# Keep TensorFlow quiet and single-process friendly in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: {SHARED_DATA} is absent")
    return SHARED_DATA
