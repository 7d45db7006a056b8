"""The additive score's blocked computation equals the plain formula ``v(tanh(W₁q + W₂k))``."""

import pytest
import torch

from alignbench.attention import score_attention
from alignbench.config import build_score
from alignbench.models.matching import CrossAttentionMatcher, chunked_similarity
from alignbench.scores import cross_logits
from alignbench.scores.additive import additive_logits


def reference_logits(score, q, k):
    """The unblocked formula: the whole ``[B, Lq, Lk, h]`` tanh, reduced by ``score.vector``."""
    hidden = torch.tanh(score.query_map(q).unsqueeze(2) + score.key_map(k).unsqueeze(1))
    return score.vector(hidden).squeeze(-1).unsqueeze(1)


def masked_inputs(b=3, lq=6, lk=9, dim=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, lq, dim, generator=g).requires_grad_()
    k = torch.randn(b, lk, dim, generator=g).requires_grad_()
    key_mask = torch.ones(b, lk, dtype=torch.bool)
    key_mask[1, 5:] = False
    key_mask[2, 1:] = False
    query_mask = torch.ones(b, lq, dtype=torch.bool)
    query_mask[0, 4:] = False
    return q, k, key_mask, query_mask


def grads_of(fn, tensors):
    torch.manual_seed(5)
    out = fn()
    loss = (out * torch.randn_like(out)).sum()
    return [out.detach()] + list(torch.autograd.grad(loss, tensors))


# budgets: whole batch at once, some batch items per block, a few query rows per block, one row per block
@pytest.mark.parametrize("budget", [1 << 20, 2 * 6 * 9 * 8, 2 * 9 * 8, 1])
def test_blocked_logits_and_gradients_equal_the_formula(budget, monkeypatch):
    torch.manual_seed(0)
    score = build_score("additive", 16, 16, hidden_dim=8)
    q, k, key_mask, query_mask = masked_inputs()
    params = [q, k, *score.parameters()]

    def attention(logit_fn):
        logits = logit_fn()
        return score_attention(score, q, k, key_mask, query_mask, logits=logits)

    expected = grads_of(lambda: attention(lambda: reference_logits(score, q, k)), params)
    monkeypatch.setattr("alignbench.scores.additive.BLOCK_ELEMENTS", budget)
    blocked = lambda: additive_logits(score.query_map(q), score.key_map(k), score.vector.weight, budget).unsqueeze(1)
    for got in (grads_of(lambda: attention(blocked), params), grads_of(lambda: attention(lambda: score(q, k)), params)):
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # padded positions get zero weight and zero gradient through the masked softmax
    weights = expected[0]
    assert (weights[1, :, :, 5:] == 0).all() and (weights[0, :, 4:] == 0).all()


def test_blocked_logits_gradcheck_in_double():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 5, dtype=torch.float64, generator=g, requires_grad=True)
    for budget in (1 << 10, 15, 1):
        assert torch.autograd.gradcheck(lambda a, b, c: additive_logits(a, b, c, budget), (q, k, v))


def test_cross_logits_and_retrieval_similarity_equal_the_formula():
    """All-pairs evaluation (one long query × key sequence) gives the unblocked values."""
    torch.manual_seed(0)
    matcher = CrossAttentionMatcher(lambda: build_score("additive", 16, 16, hidden_dim=8)).eval()
    score = matcher.score
    g = torch.Generator().manual_seed(2)
    words, regions = torch.randn(7, 6, 16, generator=g), torch.randn(4, 5, 16, generator=g)
    word_mask = torch.arange(6)[None] < torch.tensor([6, 3, 5, 1, 6, 4, 2])[:, None]
    with torch.no_grad():
        got = cross_logits(score, words, regions)
        pairs_q = words.unsqueeze(0).expand(4, -1, -1, -1).reshape(28, 6, 16)
        pairs_k = regions.unsqueeze(1).expand(-1, 7, -1, -1).reshape(28, 5, 16)
        torch.testing.assert_close(got.reshape(28, 1, 6, 5), reference_logits(score, pairs_q, pairs_k),
                                   rtol=1e-5, atol=1e-6)
        sims = chunked_similarity(matcher, words, word_mask, regions, image_chunk=3, caption_chunk=2)
        score.combine = lambda pq, pk: score.vector(torch.tanh(pq.unsqueeze(2) + pk.unsqueeze(1))).squeeze(-1).unsqueeze(1)
        ref = chunked_similarity(matcher, words, word_mask, regions, image_chunk=3, caption_chunk=2)
    torch.testing.assert_close(sims, ref, rtol=1e-5, atol=1e-6)


def test_bfloat16_autocast_matches_the_formula_under_autocast():
    """Under CPU autocast the blocks compute in bfloat16, as the plain formula does there."""
    torch.manual_seed(0)
    score = build_score("additive", 16, 16, hidden_dim=8)
    q, k, _, _ = masked_inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = score(q, k), reference_logits(score, q, k)
    assert got.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-2)


def test_shape_errors_name_the_function():
    with pytest.raises(ValueError, match="additive_logits: expected query"):
        additive_logits(torch.zeros(2, 3, 4), torch.zeros(1, 5, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="additive_logits: vector has 3 values"):
        additive_logits(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(1, 3))
