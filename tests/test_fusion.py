"""Glimpse fusion: one score per glimpse, shared normalisation path, clear errors."""

import pytest
import torch

from alignbench.models.fusion import GlimpseFusion
from alignbench.config import build_score, list_scores
from test_scores import takes_glimpses


@pytest.mark.parametrize("name", list_scores())
def test_every_score_fuses_with_masks(name):
    torch.manual_seed(0)
    extra = {"glimpses": 3} if takes_glimpses(name) else {}
    fusion = GlimpseFusion(lambda: build_score(name, 8, 8, **extra), hidden_dim=8, glimpses=3)
    q, v = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    q_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    v_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out, weights = fusion(q, v, q_mask, v_mask)
    assert out.shape == q.shape and weights.shape == (2, 3, 4, 5)
    assert (weights[1, :, :, 3:] == 0).all() and (weights[1, :, 2:, :] == 0).all()
    # padded regions never influence the valid outputs
    v2 = v.clone()
    v2[1, 3:] = 1e3
    out2, _ = fusion(q, v2, q_mask, v_mask)
    assert torch.allclose(out[1, :2], out2[1, :2], atol=1e-5)
    if len(fusion.scores) > 1:  # one module per glimpse, each with its own parameters
        assert len(fusion.scores) == 3 and fusion.scores[0] is not fusion.scores[1]


def test_glimpse_mismatch_and_bad_mask_name_the_score():
    with pytest.raises(ValueError, match="BANScore gives 8 maps but the model has glimpses=2"):
        GlimpseFusion(lambda: build_score("ban", 8, 8, glimpses=8), hidden_dim=8, glimpses=2)
    fusion = GlimpseFusion(lambda: build_score("additive", 8, 8), hidden_dim=8, glimpses=2)
    with pytest.raises(ValueError, match=r"AdditiveScore: attend: key_mask must have shape \(2, 5\)"):
        fusion(torch.randn(2, 4, 8), torch.randn(2, 5, 8), None, torch.ones(2, 4, dtype=torch.bool))
