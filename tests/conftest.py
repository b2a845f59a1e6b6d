import os
from pathlib import Path

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# the test models are tiny: one thread avoids OpenMP overhead and oversubscription when processes share 2 cores
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in every test, also after a test (a study slice, a script) changed it."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAIRSEQ_FIXTURES = SHARED_DATA.parent / "reference" / "fairseq_fixtures"


def _shared_folder(variable: str, default: Path, what: str) -> Path:
    """A folder of ../shared (or the one `variable` names); skips the test cleanly when it is absent."""
    path = Path(os.environ.get(variable, default))
    if not path.is_dir():
        pytest.skip(f"{what} folder {path} not found")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; skips the test cleanly when the folder is absent."""
    return _shared_folder("D2V_HF_SHARED_DATA", SHARED_DATA, "real data")


@pytest.fixture(scope="session")
def fairseq_fixtures():
    """Path to ../shared/reference/fairseq_fixtures (fairseq's own outputs); skips cleanly when it is absent."""
    return _shared_folder("D2V_HF_FAIRSEQ_FIXTURES", FAIRSEQ_FIXTURES, "fairseq fixture")
