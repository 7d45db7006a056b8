"""Tests of the image-text retrieval metric (alignbench.metrics.retrieval)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alignbench.metrics import retrieval
from alignbench.metrics.retrieval import recall_at_k, retrieval_ranks

# ---------------------------------------------------------------------------------------
# Independent implementations.
# 1. A transcription of the SCAN / VSE++ evaluation loops (5 captions per image, captions
#    5i..5i+4 belong to image i, 0-based ranks, medr = floor(median) + 1), with a stable
#    argsort of -scores so that ties go to the lower index.
# 2. A loop over queries for any captions per image that sorts with an explicit tie
#    break: in favour of the relevant items (must equal "optimistic"), against them
#    (must equal "pessimistic"), or by index (must lie between the two).
# ---------------------------------------------------------------------------------------


def _scan_i2t(sims: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    npts = sims.shape[0]
    ranks = np.zeros(npts)
    for index in range(npts):
        inds = np.argsort(-sims[index], kind="stable")
        rank = 1e20
        for i in range(5 * index, 5 * index + 5, 1):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:  # noqa: PLR1730 (kept as in the reference)
                rank = tmp
        ranks[index] = rank
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    medr = np.floor(np.median(ranks)) + 1
    return ranks, {"i2t_r1": r1, "i2t_r5": r5, "i2t_r10": r10, "i2t_medr": float(medr)}


def _scan_t2i(sims: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    npts = sims.shape[0]
    ranks = np.zeros(5 * npts)
    sims = sims.T
    for index in range(npts):
        for i in range(5):
            inds = np.argsort(-sims[5 * index + i], kind="stable")
            ranks[5 * index + i] = np.where(inds == index)[0][0]
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    medr = np.floor(np.median(ranks)) + 1
    return ranks, {"t2i_r1": r1, "t2i_r5": r5, "t2i_r10": r10, "t2i_medr": float(medr)}


def _loop_ranks(sims: np.ndarray, caption_image: np.ndarray, favour: str) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks by sorting; ties broken for ("own"), against ("other") or by "index"."""
    n_images, n_captions = sims.shape

    def order(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
        if favour == "index":
            return np.argsort(-scores, kind="stable")
        key = ~relevant if favour == "own" else relevant
        return np.lexsort((key, -scores))  # last key is primary

    i2t = np.zeros(n_images, dtype=np.int64)
    for i in range(n_images):
        relevant = caption_image == i
        if relevant.any():
            positions = np.flatnonzero(relevant[order(sims[i], relevant)])
            i2t[i] = positions.min() + 1
    t2i = np.zeros(n_captions, dtype=np.int64)
    for j in range(n_captions):
        relevant = np.arange(n_images) == caption_image[j]
        t2i[j] = np.flatnonzero(relevant[order(sims[:, j], relevant)])[0] + 1
    return i2t, t2i


def _five_per_image(n_images: int) -> np.ndarray:
    return np.repeat(np.arange(n_images), 5)


# --------------------------------------------------------------------------- hand cases

# 4 images, 6 captions, all scores negative; image 2 has no caption, image 0 has three.
NEG_SIMS = np.array(
    [
        [-0.1, -0.5, -0.9, -0.2, -0.3, -0.8],
        [-0.4, -0.6, -0.7, -0.5, -0.1, -0.2],
        [-0.2, -0.1, -0.3, -0.4, -0.5, -0.6],
        [-0.9, -0.8, -0.2, -0.3, -0.7, -0.4],
    ]
)
NEG_CAPTION_IMAGE = [0, 0, 0, 1, 3, 3]
NEG_I2T = [1, 4, 0, 3]  # image 2: no caption
NEG_T2I = [1, 2, 4, 4, 4, 2]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_negative_scores_and_varying_captions_per_image(ties):
    i2t, t2i = retrieval_ranks(NEG_SIMS, NEG_CAPTION_IMAGE, ties=ties)
    assert i2t.dtype == torch.int64 and t2i.dtype == torch.int64
    assert i2t.tolist() == NEG_I2T and t2i.tolist() == NEG_T2I
    out = recall_at_k(NEG_SIMS, NEG_CAPTION_IMAGE, ks=(1, 2, 3), ties=ties)
    assert list(out) == [
        "i2t_r1", "i2t_r2", "i2t_r3", "t2i_r1", "t2i_r2", "t2i_r3", "rsum", "i2t_medr", "t2i_medr",
    ]
    # i2t over the 3 images with captions: ranks 1, 4, 3
    assert out["i2t_r1"] == pytest.approx(100 / 3)
    assert out["i2t_r2"] == pytest.approx(100 / 3)
    assert out["i2t_r3"] == pytest.approx(200 / 3)
    assert out["t2i_r1"] == pytest.approx(100 / 6)
    assert out["t2i_r2"] == pytest.approx(50.0)
    assert out["t2i_r3"] == pytest.approx(50.0)
    assert out["rsum"] == pytest.approx(100 / 3 + 100 / 3 + 200 / 3 + 100 / 6 + 50 + 50)
    assert out["i2t_medr"] == 3.0  # median of 1, 3, 4
    assert out["t2i_medr"] == 3.0  # mean of the middle ranks 2 and 4


def test_all_negative_scores_match_shifted_positive_scores():
    shifted = NEG_SIMS + 10.0
    assert (NEG_SIMS < 0).all()
    assert recall_at_k(NEG_SIMS, NEG_CAPTION_IMAGE) == recall_at_k(shifted, NEG_CAPTION_IMAGE)
    assert recall_at_k(NEG_SIMS, NEG_CAPTION_IMAGE)["t2i_r1"] == pytest.approx(100 / 6)


def test_even_count_median_is_rounded_down():
    sims = np.array([[4.0, 3.0], [3.0, 0.0], [2.0, 1.0], [1.0, 2.0]])
    i2t, t2i = retrieval_ranks(sims, [0, 1])
    assert i2t.tolist() == [1, 2, 0, 0] and t2i.tolist() == [1, 4]
    out = recall_at_k(sims, [0, 1])
    assert out["i2t_medr"] == 1.0  # np.median([1, 2]) = 1.5
    assert out["t2i_medr"] == 2.0  # np.median([1, 4]) = 2.5
    # the reference formula on 0-based ranks gives the same numbers
    assert np.floor(np.median([0, 1])) + 1 == 1.0 and np.floor(np.median([0, 3])) + 1 == 2.0


def test_partial_ties():
    sims = np.array([[2.0, 2.0, 2.0, 1.0], [0.0, 5.0, 5.0, 1.0]])
    caption_image = [0, 0, 1, 1]
    i2t, t2i = retrieval_ranks(sims, caption_image)
    assert i2t.tolist() == [2, 2] and t2i.tolist() == [1, 2, 1, 2]
    i2t, t2i = retrieval_ranks(sims, caption_image, ties="optimistic")
    assert i2t.tolist() == [1, 1] and t2i.tolist() == [1, 2, 1, 1]


def test_constant_scores():
    sims = torch.full((3, 6), -0.25)
    caption_image = [0, 0, 1, 1, 1, 2]
    i2t, t2i = retrieval_ranks(sims, caption_image)
    assert i2t.tolist() == [5, 4, 6]  # behind every caption of the other images
    assert t2i.tolist() == [3] * 6
    out = recall_at_k(sims, caption_image, ks=(1, 3, 5))
    assert (out["i2t_r1"], out["i2t_r5"], out["t2i_r1"], out["t2i_r3"]) == (0.0, 200 / 3, 0.0, 100.0)
    optimistic = recall_at_k(sims, caption_image, ties="optimistic")
    assert all(optimistic[key] == 100.0 for key in optimistic if "_r" in key)
    assert optimistic["i2t_medr"] == optimistic["t2i_medr"] == 1.0


def _perfect(n_images: int, noise: bool) -> tuple[torch.Tensor, np.ndarray]:
    caption_image = _five_per_image(n_images)
    sims = 2.0 * torch.from_numpy(caption_image[None, :] == np.arange(n_images)[:, None]).double()
    if noise:
        sims = sims + torch.rand(sims.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sims, caption_image


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("noise", [False, True])
def test_perfect_and_reversed_retrieval(ties, noise):
    sims, caption_image = _perfect(5, noise)
    out = recall_at_k(sims, caption_image, ties=ties)
    assert all(out[f"{d}_r{k}"] == 100.0 for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert out["rsum"] == 600.0 and out["i2t_medr"] == 1.0 and out["t2i_medr"] == 1.0

    i2t, t2i = retrieval_ranks(-sims, caption_image, ties=ties)
    assert i2t.tolist() == [21] * 5 and t2i.tolist() == [5] * 25  # behind all 20 / 4 others
    out = recall_at_k(-sims, caption_image, ties=ties)
    assert [out[f"i2t_r{k}"] for k in (1, 5, 10)] == [0.0, 0.0, 0.0]
    assert [out[f"t2i_r{k}"] for k in (1, 5, 10)] == [0.0, 100.0, 100.0]
    assert out["rsum"] == 200.0 and out["i2t_medr"] == 21.0 and out["t2i_medr"] == 5.0


# --------------------------------------------------------------------------- input types


def test_numpy_and_torch_inputs_agree():
    rng = np.random.default_rng(3)
    sims = rng.standard_normal((30, 150)).astype(np.float32)
    caption_image = rng.integers(0, 30, size=150)
    expected = recall_at_k(sims, caption_image)
    assert recall_at_k(torch.from_numpy(sims), torch.from_numpy(caption_image)) == expected
    assert recall_at_k(torch.from_numpy(sims).requires_grad_(), caption_image.tolist()) == expected
    assert recall_at_k(np.asfortranarray(sims), caption_image.astype(np.int32)) == expected
    assert recall_at_k(sims.T.copy().T, caption_image.astype(np.uint16)) == expected
    # negative strides: captions reversed together with their image indices
    assert recall_at_k(sims[:, ::-1], caption_image[::-1]) == expected


def test_all_dtypes_agree_on_exactly_representable_scores():
    rng = np.random.default_rng(4)
    sims = rng.integers(-16, 16, size=(12, 40)) / 4.0  # exact in every float dtype
    caption_image = rng.integers(0, 12, size=40)
    for ties in ("pessimistic", "optimistic"):
        expected = recall_at_k(sims, caption_image, ks=(1, 2, 5), ties=ties)
        for dtype in (np.float16, np.float32, np.float64):
            assert recall_at_k(sims.astype(dtype), caption_image, ks=(1, 2, 5), ties=ties) == expected
        for tdtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            tensor = torch.from_numpy(sims).to(tdtype)
            assert recall_at_k(tensor, caption_image, ks=(1, 2, 5), ties=ties) == expected
        assert recall_at_k((sims * 4).astype(np.int64), caption_image, ks=(1, 2, 5), ties=ties) == expected


@pytest.mark.parametrize("block", [1, 7, 50, 10**9])
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_row_blocks_do_not_change_the_result(monkeypatch, block, ties):
    rng = np.random.default_rng(5)
    sims = rng.integers(-3, 3, size=(23, 11)).astype(np.float32)
    caption_image = rng.integers(0, 23, size=11)
    expected = _loop_ranks(sims, caption_image, "other" if ties == "pessimistic" else "own")
    monkeypatch.setattr(retrieval, "BLOCK_ELEMENTS", block)
    slices = retrieval._row_blocks(23, 11)
    assert slices[0].start == 0 and slices[-1].stop == 23
    assert all(a.stop == b.start for a, b in pairwise(slices))
    assert len(slices) == (23 if block < 11 else -(-23 // (block // 11)))
    for ours, ref in zip(retrieval_ranks(sims, caption_image, ties=ties), expected):
        np.testing.assert_array_equal(ours.numpy(), ref)
    bad = sims.copy()
    bad[17, 4] = np.nan
    with pytest.raises(ValueError, match=r"sims\[17, 4\] = nan"):
        recall_at_k(bad, caption_image)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("sims", "caption_image", "match"),
    [
        (np.zeros(5), [0] * 5, r"2-D .*shape \(5,\)"),
        (np.zeros((2, 3, 4)), [0] * 3, r"2-D .*shape \(2, 3, 4\)"),
        (np.zeros((2, 0)), [], r"at least one image and one caption"),
        (np.zeros((2, 3)), [0, 1], r"caption_image has 2 entries but sims has 3 captions"),
        (np.zeros((2, 3)), [0, 1, 2], r"caption_image\[2\] = 2 is not an image index in \[0, 2\)"),
        (np.zeros((2, 3)), [0, -1, 1], r"caption_image\[1\] = -1"),
        (np.zeros((2, 3)), [[0, 1, 1]], r"caption_image must be 1-D"),
        (np.zeros((2, 3)), [0.0, 1.0, 1.0], r"integers, got dtype float64"),
        (np.array([[0.0, 1.0, np.nan], [0.0, 0.0, 0.0]]), [0, 1, 1], r"sims\[0, 2\] = nan"),
        (torch.tensor([[0.0, 1.0], [float("-inf"), 0.0]]), [0, 1], r"sims\[1, 0\] = -inf"),
        (np.array([[0.0, np.inf]]), [0, 0], r"sims\[0, 1\] = inf"),
        (np.zeros((2, 2), dtype=bool), [0, 1], r"real-valued, got dtype bool"),
        (torch.zeros(2, 2, dtype=torch.complex64), [0, 1], r"real-valued"),
    ],
)
def test_invalid_inputs_raise(sims, caption_image, match):
    with pytest.raises(ValueError, match=match):
        recall_at_k(sims, caption_image)


@pytest.mark.parametrize(
    ("ks", "match"),
    [((), "at least one K"), ((1, 0), "positive int, got 0"), ((1, 5, 1), "distinct"),
     ((True,), "positive int, got True"), ((2.0,), "positive int, got 2.0")],
)
def test_invalid_ks_raise(ks, match):
    with pytest.raises(ValueError, match=match):
        recall_at_k(np.eye(2), [0, 1], ks=ks)


def test_invalid_tie_rule_raises():
    with pytest.raises(ValueError, match="'random'"):
        recall_at_k(np.eye(2), [0, 1], ties="random")


# --------------------------------------------------------------------------- cross-checks


@pytest.mark.parametrize(("n_images", "seed"), [(1, 0), (2, 1), (7, 2), (40, 3), (100, 4)])
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_matches_scan_reference_on_random_scores(n_images, seed, ties):
    rng = np.random.default_rng(seed)
    sims = rng.standard_normal((n_images, 5 * n_images))
    if seed % 2:
        sims = sims - 3.0  # mostly negative
    assert len(np.unique(sims)) == sims.size  # tie-free: every tie rule must agree
    ref_i2t, i2t_metrics = _scan_i2t(sims)
    ref_t2i, t2i_metrics = _scan_t2i(sims)
    i2t, t2i = retrieval_ranks(sims, _five_per_image(n_images), ties=ties)
    assert i2t.tolist() == (ref_i2t + 1).astype(int).tolist()
    assert t2i.tolist() == (ref_t2i + 1).astype(int).tolist()
    out = recall_at_k(sims, _five_per_image(n_images), ties=ties)
    for key, value in {**i2t_metrics, **t2i_metrics}.items():
        assert out[key] == value, key
    assert out["rsum"] == pytest.approx(sum(v for k, v in out.items() if "_r" in k and k != "rsum"))
    if n_images == 100:  # the random case is not trivially perfect or empty
        assert 0 < out["t2i_r10"] < 100 and out["t2i_medr"] > 1


@pytest.mark.parametrize("seed", range(6))
def test_tie_rules_are_the_extreme_sort_orders(seed):
    rng = np.random.default_rng(100 + seed)
    n_images, n_captions = rng.integers(1, 12), rng.integers(1, 40)
    sims = rng.integers(-2, 2, size=(n_images, n_captions)).astype(np.float64)  # many ties
    caption_image = rng.integers(0, n_images, size=n_captions)
    pess = [r.numpy() for r in retrieval_ranks(sims, caption_image)]
    opt = [r.numpy() for r in retrieval_ranks(sims, caption_image, ties="optimistic")]
    for ours, ref in zip(pess, _loop_ranks(sims, caption_image, "other")):
        np.testing.assert_array_equal(ours, ref)
    for ours, ref in zip(opt, _loop_ranks(sims, caption_image, "own")):
        np.testing.assert_array_equal(ours, ref)
    for low, mid, high in zip(opt, _loop_ranks(sims, caption_image, "index"), pess):
        assert (low <= mid).all() and (mid <= high).all()


def test_scan_reference_with_ties_lies_between_the_tie_rules():
    rng = np.random.default_rng(7)
    sims = rng.integers(0, 3, size=(20, 100)).astype(np.float64)
    opt = recall_at_k(sims, _five_per_image(20), ties="optimistic")
    pess = recall_at_k(sims, _five_per_image(20), ties="pessimistic")
    ref = {**_scan_i2t(sims)[1], **_scan_t2i(sims)[1]}
    for key, value in ref.items():
        if key.endswith("medr"):
            assert opt[key] <= value <= pess[key], key
        else:
            assert opt[key] >= value >= pess[key], key
    assert opt["rsum"] > pess["rsum"]  # the ties do matter here


# --------------------------------------------------------------------------- properties


@st.composite
def _problems(draw):
    n_images = draw(st.integers(1, 6))
    n_captions = draw(st.integers(1, 12))
    sims = draw(arrays(np.float64, (n_images, n_captions), elements=st.integers(-3, 3).map(float)))
    caption_image = np.array(draw(st.lists(st.integers(0, n_images - 1), min_size=n_captions, max_size=n_captions)))
    return sims, caption_image


@settings(max_examples=150, deadline=None)
@given(
    problem=_problems(),
    data=st.data(),
    shift=st.integers(-1000, 1000),
    ties=st.sampled_from(["pessimistic", "optimistic"]),
)
def test_properties(problem, data, shift, ties):
    sims, caption_image = problem
    n_images, n_captions = sims.shape
    ks = tuple(range(1, max(n_images, n_captions) + 2))
    out = recall_at_k(sims, caption_image, ks=ks, ties=ties)
    for d, n_candidates in (("i2t", n_captions), ("t2i", n_images)):
        recalls = [out[f"{d}_r{k}"] for k in ks]
        assert all(0.0 <= r <= 100.0 for r in recalls)
        assert all(a <= b for a, b in pairwise(recalls))  # monotone in K
        assert out[f"{d}_r{n_candidates}"] == 100.0
        assert 1.0 <= out[f"{d}_medr"] <= n_candidates
    favour = "other" if ties == "pessimistic" else "own"
    for ours, ref in zip(retrieval_ranks(sims, caption_image, ties=ties), _loop_ranks(sims, caption_image, favour)):
        np.testing.assert_array_equal(ours.numpy(), ref)

    # captions permuted together with their image indices
    perm = np.array(data.draw(st.permutations(range(n_captions))))
    assert recall_at_k(sims[:, perm], caption_image[perm], ks=ks, ties=ties) == out
    # images permuted, with the captions' image indices renamed to match
    order = np.array(data.draw(st.permutations(range(n_images))))
    new_index = np.argsort(order)  # image order[a] becomes image a
    assert recall_at_k(sims[order], new_index[caption_image], ks=ks, ties=ties) == out
    # a constant added to every score (exact on these integer scores)
    assert recall_at_k(sims + shift, caption_image, ks=ks, ties=ties) == out
    # optimistic recalls bound pessimistic ones from above
    other = recall_at_k(sims, caption_image, ks=ks, ties="optimistic" if ties == "pessimistic" else "pessimistic")
    low, high = (out, other) if ties == "pessimistic" else (other, out)
    assert all(low[key] <= high[key] for key in out if "_r" in key)
