"""Every test runs offline, without tokens, with temp caches and no progress bars."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["PROMPTMIX_NO_PROGRESS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Caches must be set before datasets/huggingface_hub are imported: they read them once at import.
import tempfile  # noqa: E402

_CACHE = tempfile.mkdtemp(prefix="promptmix-test-cache-")
os.environ["HF_HOME"] = _CACHE
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE, "datasets")
os.environ["HF_MODULES_CACHE"] = os.path.join(_CACHE, "modules")
os.environ["PROMPTMIX_CACHE_DIR"] = os.path.join(_CACHE, "promptmix")  # raw-file hash cache (utils/statcache.py)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """All tiny models, written once per test session (per xdist worker)."""
    from promptmix.testing import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def fresh_accelerate_state():
    """accelerate's process-wide state reset after the test (a test that builds an Accelerator with other
    settings, e.g. cpu=True or mixed precision, must not leak them into the next)."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
