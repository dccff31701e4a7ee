import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def fixture_path(name):
    return os.path.join(FIXTURES, name)


def missing_front(missing):
    """An optional front's test cannot run: skip it, or fail where UPR_REQUIRE_FRONTS=1 (CI: .ci/setup_fronts.sh
    installs what the fronts need)."""
    if os.environ.get("UPR_REQUIRE_FRONTS") == "1":
        pytest.fail(f"UPR_REQUIRE_FRONTS=1 but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="session")
def golden():
    return torch.load(fixture_path("golden_base.pt"), weights_only=True)


@pytest.fixture(scope="session")
def splat_vectors():
    return torch.load(fixture_path("softsplat_cases.pt"), weights_only=True)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (tools/gpu_check.sh runs them: pytest -m cuda); "
                                       "skipped where there is none")
