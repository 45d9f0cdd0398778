import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/__init__.py: avoids 30x slowdowns under load


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster single-threaded and do not suffer from a busy second core."""
    from surrogates.model import torch_threads

    with torch_threads(1):
        yield
