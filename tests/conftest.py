import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TOFU_DIR = SHARED / "data" / "tofu"
TOFU_LOGS = SHARED / "data" / "tofu-reference-logs"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    if not TOFU_DIR.is_dir():
        pytest.skip(f"the shared TOFU release is absent ({TOFU_DIR}); it sits beside the repo in CI")
    return TOFU_DIR


@pytest.fixture(scope="session")
def tofu_logs() -> Path:
    if not TOFU_LOGS.is_dir():
        pytest.skip(f"the shared TOFU reference logs are absent ({TOFU_LOGS})")
    return TOFU_LOGS


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model training tests: as fast on tiny matrices, and much faster
    when other jobs share the 2 cores. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random Llama; tests must not modify it in place (clone it)."""
    from obliviate.models import load_model

    return load_model("tiny-llama", seed=0)


@pytest.fixture()
def tiny_fresh():
    from obliviate.models import load_model

    return load_model("tiny-llama", seed=0)


@pytest.fixture(scope="session")
def smollm2():
    from obliviate.models import load_model

    return load_model("smollm2-135m")
