"""Invariants of the shared attention core and of attention entropy."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignbench.attention import attend, attended_sum, to_joint
from alignbench.metrics import attention_entropy, map_entropy


@pytest.mark.parametrize("norm", ["row", "joint", "co"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fully_masked_sample_is_zero_not_nan(norm, dtype):
    logits = torch.randn(2, 2, 3, 4).to(dtype)
    key_mask = torch.tensor([[True] * 4, [False] * 4])
    w = attend(logits, norm, key_mask)
    assert not torch.isnan(w).any()
    assert (w[1] == 0).all()
    assert w.dtype == dtype


@pytest.mark.parametrize("norm", ["row", "joint", "co"])
def test_extreme_logits_stay_finite(norm):
    logits = torch.tensor([1e30, -1e30, 0.0, 3e38]).view(1, 1, 2, 2)
    w = attend(logits, norm)
    assert torch.isfinite(w).all()


def test_row_is_softmax_over_valid_keys():
    logits = torch.randn(1, 1, 2, 5)
    key_mask = torch.tensor([[True, True, False, True, False]])
    w = attend(logits, "row", key_mask)
    ref = torch.softmax(logits[..., [0, 1, 3]], -1)
    assert torch.allclose(w[..., [0, 1, 3]], ref, atol=1e-6)


def test_joint_is_softmax_over_all_pairs():
    logits = torch.randn(2, 3, 4, 5)
    w = attend(logits, "joint")
    ref = torch.softmax(logits.flatten(2), -1).view_as(logits)
    assert torch.allclose(w, ref, atol=1e-6)


def test_co_is_outer_product_of_marginals():
    logits = torch.randn(1, 1, 3, 4)
    w = attend(logits, "co")[0, 0]
    a_q = torch.softmax(logits[0, 0].amax(1), 0)
    a_k = torch.softmax(logits[0, 0].amax(0), 0)
    assert torch.allclose(w, torch.outer(a_q, a_k), atol=1e-6)
    assert torch.linalg.matrix_rank(w) == 1


def test_bad_masks_are_named():
    logits = torch.randn(2, 1, 3, 4)
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 4\), got \(2, 3\)"):
        attend(logits, "row", torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="query_mask must be a bool tensor"):
        attend(logits, "row", None, torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown normalization 'softmax'; valid: row, joint, co"):
        attend(logits, "softmax")


def test_to_joint_and_attended_sum():
    w = attend(torch.randn(2, 1, 3, 4), "row", query_mask=torch.tensor([[True, True, False], [True] * 3]))
    joint = to_joint(w, "row", torch.tensor([[True, True, False], [True] * 3]))
    assert torch.allclose(joint.sum((-2, -1)), torch.ones(2, 1), atol=1e-6)
    values = torch.randn(2, 4, 6)
    out = attended_sum(w, values)
    assert out.shape == (2, 1, 3, 6)
    assert torch.allclose(out[0, 0, 1], (w[0, 0, 1, :, None] * values[0]).sum(0), atol=1e-6)


def test_entropy_extremes():
    onehot = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    uniform = torch.full((1, 4), 0.25)
    assert attention_entropy(onehot).item() == 0.0
    assert attention_entropy(uniform).item() == pytest.approx(1.0, abs=1e-6)
    assert attention_entropy(uniform, normalized=False).item() == pytest.approx(math.log(4), abs=1e-6)
    # uniform over the 2 valid keys of 4 is maximal entropy for that support
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])
    assert attention_entropy(half, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert attention_entropy(torch.tensor([[1.0, 0, 0]]), torch.tensor([[True, False, False]])).item() == 0.0
    assert attention_entropy(torch.zeros(1, 3)).item() == 0.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 10_000), scale=st.floats(0.01, 30.0))
def test_entropy_is_in_unit_interval(n, seed, scale):
    logits = torch.randn(3, n, generator=torch.Generator().manual_seed(seed)) * scale
    e = attention_entropy(torch.softmax(logits, -1))
    assert ((e >= -1e-5) & (e <= 1 + 1e-5)).all()


@settings(max_examples=40, deadline=None)
@given(lq=st.integers(1, 5), lk=st.integers(1, 6), valid=st.integers(0, 6), seed=st.integers(0, 1000),
       norm=st.sampled_from(["row", "joint", "co"]))
def test_attend_properties(lq, lk, valid, seed, norm):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, lq, lk, generator=g) * 5
    key_mask = torch.arange(lk)[None].expand(2, lk) < min(valid, lk)
    w = attend(logits, norm, key_mask)
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert (w[..., ~key_mask[0]] == 0).all()
    total = w.sum((-2, -1))
    expected = (lq if norm == "row" else 1.0) if key_mask[0].any() else 0.0
    assert torch.allclose(total, torch.full_like(total, float(expected)), atol=1e-5)


def test_map_entropy_per_normalization():
    w = torch.full((1, 1, 2, 4), 0.25)
    assert map_entropy(w, "row").item() == pytest.approx(1.0, abs=1e-6)
    joint = torch.zeros(1, 1, 2, 4)
    joint[0, 0, 1, 2] = 1.0
    assert map_entropy(joint, "joint").item() == 0.0
    assert map_entropy(torch.full((1, 1, 2, 4), 1 / 8), "joint").item() == pytest.approx(1.0, abs=1e-6)


def test_map_entropy_is_comparable_across_normalizations():
    """The same focus (every word on one region) scores 0 whatever the normalisation."""
    lq, lk = 8, 16
    row = torch.zeros(1, 1, lq, lk)
    row[..., 3] = 1.0
    joint = row / lq
    assert map_entropy(row, "row").item() == 0.0
    assert map_entropy(joint, "joint").item() == 0.0
    assert map_entropy(joint, "co").item() == 0.0
    # co-attention's outer product: entropy of the key marginal
    a_q, a_k = torch.softmax(torch.randn(lq), 0), torch.softmax(torch.randn(lk), 0)
    co = torch.outer(a_q, a_k).view(1, 1, lq, lk)
    assert map_entropy(co, "co").item() == pytest.approx(attention_entropy(a_k[None]).item(), abs=1e-5)


def test_map_entropy_respects_masks():
    w = torch.zeros(1, 1, 3, 4)
    w[0, 0, :2, :2] = 0.5  # two valid words, uniform over the two valid regions
    kmask = torch.tensor([[True, True, False, False]])
    qmask = torch.tensor([[True, True, False]])
    assert map_entropy(w, "row", kmask, qmask).item() == pytest.approx(1.0, abs=1e-6)
    assert map_entropy(w / 2, "joint", kmask, qmask).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("norm", ["row", "joint", "co"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_through_fully_masked_sample_is_finite(norm, dtype):
    logits = torch.randn(2, 1, 3, 4).to(dtype).requires_grad_(True)
    key_mask = torch.tensor([[True] * 4, [False] * 4])
    query_mask = torch.tensor([[True, True, False], [True] * 3])
    (attend(logits, norm, key_mask, query_mask) * torch.randn(2, 1, 3, 4).to(dtype)).sum().backward()
    assert torch.isfinite(logits.grad.float()).all()
