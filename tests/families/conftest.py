"""Fixtures of the DreamerV3-family tests: the shared fixtures' files, loaded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.rssm.formats import CheckpointRef, get_format

FIXTURES = Path(__file__).parent.parent / "fixtures"
TORCH_DIR = FIXTURES / "dreamerv3_torch"
OFFICIAL_DIR = FIXTURES / "dreamerv3_official"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def torch_model():  # noqa: ANN201 - TorchWorldModel
    ref = CheckpointRef("dreamerv3-torch", TORCH_DIR / "latest.pt", None)
    return get_format("dreamerv3-torch").load(ref)


@pytest.fixture(scope="session")
def torch_ref() -> dict[str, np.ndarray]:
    with np.load(TORCH_DIR / "reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="session")
def official_model():  # noqa: ANN201 - OfficialWorldModel
    (ref,) = get_format("dreamerv3").discover(OFFICIAL_DIR)
    return get_format("dreamerv3").load(ref)


@pytest.fixture(scope="session")
def official_ref() -> dict[str, np.ndarray]:
    with np.load(OFFICIAL_DIR / "reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="session")
def official_mode_ref() -> dict[str, np.ndarray]:
    with np.load(OFFICIAL_DIR / "reference_mode.npz") as data:
        return dict(data)


def max_err(actual: torch.Tensor, expected: np.ndarray) -> float:
    """Max abs difference; shapes must match exactly (no broadcasting hides a bug)."""
    expected_t = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    assert actual.shape == expected_t.shape, (actual.shape, expected_t.shape)
    return float((actual - expected_t).abs().max())


def mode_mismatches(
    stoch: torch.Tensor, expected: np.ndarray, logits: torch.Tensor, tol: float = 1e-5
) -> int:
    """Latent groups whose one-hot mode differs from the reference's, not counting groups
    whose top two logits lie within `tol` (the logits' own parity tolerance): there the
    argmax is a tie that float rounding on another CPU may break either way."""
    expected_t = torch.as_tensor(np.asarray(expected), dtype=stoch.dtype)
    assert stoch.shape == expected_t.shape == logits.shape, (stoch.shape, expected_t.shape)
    differs = (stoch != expected_t).any(-1)  # (..., G)
    top2 = logits.topk(2, dim=-1).values  # (..., G, 2)
    tied = (top2[..., 0] - top2[..., 1]) <= tol
    return int((differs & ~tied).sum())
