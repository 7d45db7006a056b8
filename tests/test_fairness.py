"""Fair comparisons: every task uses each score's maps in the normalisation the score declares,
every score can give G different glimpses, and deletion hides real regions only.

Parametrised over every registered score (conf/score/) and every task's attention component
(VQA: glimpse fusion; retrieval: the cross-attention matcher; text-to-image: the generator)."""

from pathlib import Path

import pytest
import torch

from alignbench.models.fusion import GlimpseFusion
from alignbench.models.generation import Generator
from alignbench.models.matching import CrossAttentionMatcher
from alignbench.config import build_score, list_scores
from test_scores import takes_glimpses

SCORES = list_scores()
MODELS = Path(__file__).resolve().parents[1] / "alignbench" / "models"


def check_declared(weights, normalization, query_mask, key_mask):
    """``weights [B, H, Lq, Lk]`` are maps of ``normalization``: masked entries exactly 0,
    row maps sum to 1 per valid query, joint and co maps to 1 per map (co: rank one)."""
    valid = query_mask[:, None, :, None] & key_mask[:, None, None, :]
    w = weights.float()
    assert (w[~valid.expand_as(w)] == 0).all()
    if normalization == "row":
        sums = w.sum(-1)
        rows = query_mask[:, None, :].expand_as(sums)
        assert torch.allclose(sums[rows], torch.ones(()), atol=1e-4)
    else:
        assert torch.allclose(w.sum((-2, -1)), torch.ones(()), atol=1e-4)
        if normalization == "co":  # the outer product of its marginals
            outer = w.sum(-1, keepdim=True) * w.sum(-2, keepdim=True)
            assert torch.allclose(w, outer, atol=1e-5)


def build(name, q_dim, k_dim, glimpses=1):
    extra = {"glimpses": glimpses} if takes_glimpses(name) else {}
    return build_score(name, q_dim, k_dim, **extra)


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("task", ["vqa", "retrieval", "t2i", "grounding"])
def test_every_task_uses_the_declared_normalization(task, name):
    torch.manual_seed(0)
    if task == "vqa":
        fusion = GlimpseFusion(lambda: build(name, 8, 8, glimpses=2), hidden_dim=8, glimpses=2)
        q, v = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
        q_mask = torch.tensor([[True] * 4, [True, True, False, False]])
        v_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        _, weights = fusion(q, v, q_mask, v_mask)
        normalization = fusion.normalization
    elif task == "retrieval":
        matcher = CrossAttentionMatcher(lambda: build(name, 8, 8)).eval()
        words, regions = torch.randn(3, 4, 8), torch.randn(2, 5, 8)
        word_mask = torch.tensor([[True] * 4, [True, True, False, False], [True] * 3 + [False]])
        region_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        _, w = matcher(words, word_mask, regions, region_mask)  # [Ni, Nc, H, L, R]
        weights = w.reshape(6, *w.shape[2:])
        q_mask = word_mask.unsqueeze(0).expand(2, -1, -1).reshape(6, -1)
        v_mask = region_mask.unsqueeze(1).expand(-1, 3, -1).reshape(6, -1)
        normalization = matcher.normalization
    elif task == "grounding":
        from alignbench.models.grounding import GroundingModule

        model = GroundingModule(lambda q_dim, k_dim: build(name, q_dim, k_dim), vocab_size=9, visual_dim=6,
                                hidden_dim=8, embed_dim=4).eval()
        q_mask = torch.tensor([[False, True, True, False], [True, True, True, True]])  # the phrase's words
        v_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        batch = {"caption": torch.randint(2, 9, (2, 4)), "phrase_words": q_mask, "regions": torch.randn(2, 5, 6),
                 "region_boxes_norm": torch.rand(2, 5, 4), "region_mask": v_mask}
        _, weights = model.localise(batch)
        normalization = model.score.normalization
    else:
        generator = Generator(8, lambda q, k: build(name, q, k), image_size=16, noise_dim=4, channels=16,
                              attention_at=(8, 16)).eval()
        words = torch.randn(2, 5, 8)
        v_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])  # the words are the keys
        _, maps = generator(torch.randn(2, 8), words, v_mask, torch.randn(2, 4))
        normalization = generator.normalization
        for weights in maps:
            check_declared(weights, normalization, torch.ones(2, weights.shape[2], dtype=torch.bool), v_mask)
        assert normalization == build(name, 8, 8).normalization
        return
    assert normalization == build(name, 8, 8).normalization
    check_declared(weights, normalization, q_mask, v_mask)


@pytest.mark.parametrize("name", [n for n in SCORES if n != "uniform"])
def test_every_score_gives_different_glimpses(name):
    """Glimpse g reads the words through its own shared projection, so even a
    parameter-free score (dot, scaled_dot) gives G different maps."""
    torch.manual_seed(0)
    fusion = GlimpseFusion(lambda: build(name, 8, 8, glimpses=2), hidden_dim=8, glimpses=2)
    _, weights = fusion(torch.randn(2, 4, 8), torch.randn(2, 5, 8))
    assert not torch.allclose(weights[:, 0], weights[:, 1], atol=1e-4)


def test_glimpse_projections_belong_to_the_shared_model_and_start_equal():
    """The same seed gives every score the same shared weights, glimpse projections included."""
    shared = {}
    for name in ("dot", "ban", "additive"):
        torch.manual_seed(3)
        fusion = GlimpseFusion(lambda: build(name, 8, 8, glimpses=2), hidden_dim=8, glimpses=2)
        shared[name] = [p.detach().clone() for n, p in fusion.named_parameters() if not n.startswith("scores.")]
    assert all(torch.equal(a, b) for a, b in zip(shared["dot"], shared["ban"]))
    assert all(torch.equal(a, b) for a, b in zip(shared["dot"], shared["additive"]))


def test_no_model_hard_codes_a_normalization_or_branches_on_a_score_class():
    for path in sorted(MODELS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "attend(" not in text.replace("score_attention(", ""), f"{path.name} normalises by hand"
        assert "__name__ ==" not in text and "Score\"" not in text, f"{path.name} branches on a class name"


def test_deletion_hides_real_regions_only_in_both_orders():
    """Padded region slots (adaptive VQA v2 features): at each fraction the attention order and
    the random order of the shared protocol hide the same number of real regions, never a padded slot."""
    import alignbench.analysis.protocol as analysis

    hidden: list[torch.Tensor] = []

    def evaluate(keep, fraction):
        hidden.append((base & ~keep).sum(1))
        assert not (keep & ~base).any()  # a padded slot is never "kept" as if it were real
        return 0.0

    base = torch.zeros(3, 36, dtype=torch.bool)
    base[0, :20], base[1, :10], base[2, :36] = True, True, True  # 20, 10 and 36 real regions
    mass = torch.rand(3, 36).masked_fill(~base, -1.0)
    analysis.deletion_curves(analysis.deletion_orders(mass, torch.Generator().manual_seed(0), base), base, evaluate)
    n = len(analysis.DELETION_FRACTIONS)
    attention, random = hidden[:n], hidden[n:]
    for fraction, a, r in zip(analysis.DELETION_FRACTIONS, attention, random):
        assert torch.equal(a, r), (fraction, a, r)
        expected = torch.minimum(torch.round(fraction * base.sum(1).double()).long(), base.sum(1) - 1)
        assert torch.equal(a, expected)
    assert attention[2].tolist() == [5, 2, 9]  # 25% of 20, 10 and 36 real regions
