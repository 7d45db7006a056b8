"""Every score in conf/score/ is tested here without a test of its own."""

import pytest
import torch

from alignbench.attention import attend
from alignbench.config import CONF_DIR
from alignbench.scores import NORMALIZATIONS, build_score, list_scores

SCORES = sorted(p.stem for p in (CONF_DIR / "score").glob("*.yaml"))
B, LQ, LK = 3, 5, 7


def takes_glimpses(name):
    """Whether the score's class takes a glimpse count (multi-map scores such as BAN)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from alignbench.scores import score_config_path

    target = OmegaConf.load(score_config_path(name))["_target_"]
    return "glimpses" in inspect.signature(get_class(target).__init__).parameters


def make(name, q_dim=16, k_dim=16, seed=0, **kw):
    torch.manual_seed(seed)
    if takes_glimpses(name):
        kw.setdefault("glimpses", 2)
    return build_score(name, q_dim, k_dim, **kw)


def inputs(q_dim=16, k_dim=16, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, LQ, q_dim, generator=g).to(dtype)
    k = torch.randn(B, LK, k_dim, generator=g).to(dtype)
    key_mask = torch.ones(B, LK, dtype=torch.bool)
    key_mask[1, 4:] = False
    query_mask = torch.ones(B, LQ, dtype=torch.bool)
    query_mask[2, 3:] = False
    return q, k, key_mask, query_mask


def test_registry_lists_every_yaml():
    assert list_scores() == SCORES
    assert {"dot", "scaled_dot", "general", "bilinear", "biased_general", "activated_general",
            "additive", "cosine", "coattention", "ban"} <= set(SCORES)


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("dims", [(16, 16), (12, 20)])
def test_shape_and_normalization(name, dims):
    score = make(name, *dims)
    q, k, _, _ = inputs(*dims)
    logits = score(q, k)
    assert logits.shape == (B, score.heads, LQ, LK)
    assert score.normalization in NORMALIZATIONS
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_are_distributions(name, dtype):
    score = make(name).to(dtype)
    q, k, key_mask, query_mask = inputs(dtype=dtype)
    w = attend(score(q, k), score.normalization, key_mask, query_mask)
    assert w.dtype == dtype and torch.isfinite(w).all()
    assert (w[1, :, :, 4:] == 0).all() and (w[2, :, 3:, :] == 0).all()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    if score.normalization == "row":
        sums = w.float().sum(-1)
        valid_rows = query_mask[:, None, :].expand_as(sums)
        assert torch.allclose(sums[valid_rows], torch.ones(()), atol=tol)
    else:
        assert torch.allclose(w.float().sum((-2, -1)), torch.ones(()), atol=tol)


@pytest.mark.parametrize("name", SCORES)
def test_gradient_reaches_every_parameter(name):
    score = make(name, 12, 20)
    q, k, key_mask, query_mask = inputs(12, 20)
    q.requires_grad_(True)
    w = attend(score(q, k), score.normalization, key_mask, query_mask)
    target = torch.randn_like(w)
    (w * target).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    for pname, param in score.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", SCORES)
def test_masked_keys_do_not_change_weights(name):
    score = make(name)
    q, k, key_mask, query_mask = inputs()
    base = attend(score(q, k), score.normalization, key_mask, query_mask)
    extra = torch.randn(B, 4, k.shape[-1]) * 50
    k2 = torch.cat([k, extra], dim=1)
    mask2 = torch.cat([key_mask, torch.zeros(B, 4, dtype=torch.bool)], dim=1)
    w2 = attend(score(q, k2), score.normalization, mask2, query_mask)
    assert torch.allclose(w2[..., :LK], base, atol=1e-6)
    assert (w2[..., LK:] == 0).all()


@pytest.mark.parametrize("name", SCORES)
def test_logits_are_pairwise(name):
    """Logit (i, j) depends on query i and key j only: permuting keys permutes columns."""
    score = make(name).eval()
    q, k, _, _ = inputs()
    perm = torch.randperm(LK, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(score(q, k[:, perm])[..., :], score(q, k)[..., perm], atol=1e-5)
    qperm = torch.randperm(LQ, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(score(q[:, qperm], k), score(q, k)[:, :, qperm], atol=1e-5)


@pytest.mark.parametrize("name", SCORES)
def test_logits_do_not_pool_over_other_positions(name):
    """Dropping queries or keys leaves the remaining logits unchanged (no pooling, no leaks)."""
    score = make(name).eval()
    q, k, _, _ = inputs()
    full = score(q, k)
    assert torch.allclose(score(q[:, :3], k), full[:, :, :3], atol=1e-5)
    assert torch.allclose(score(q, k[:, :4]), full[..., :4], atol=1e-5)


@pytest.mark.parametrize("name", SCORES)
def test_seeded_determinism(name):
    q, k, _, _ = inputs()
    a, b = make(name, seed=5)(q, k), make(name, seed=5)(q, k)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", SCORES)
def test_bad_dimensions_name_the_score(name):
    score = make(name)
    q, k, _, _ = inputs()
    cls = type(score).__name__
    with pytest.raises(ValueError, match=cls):
        score(q[..., :10], k)
    with pytest.raises(ValueError, match=cls):
        score(q, torch.randn(B + 1, LK, 16))
    with pytest.raises(ValueError, match=rf"{cls}.*q_dim.*-4"):
        build_score(name, -4, 16)


def test_unknown_score_lists_available():
    with pytest.raises(ValueError, match="unknown score 'nope'.*scaled_dot"):
        build_score("nope", 8, 8)


def test_bad_hparams_are_named():
    with pytest.raises(ValueError, match="GeneralScore.*orientation 'wqk'.*qwk, kwq"):
        build_score("general", 8, 8, orientation="wqk")
    with pytest.raises(ValueError, match="ActivatedGeneralScore.*act 'gelu'.*tanh"):
        build_score("activated_general", 8, 8, act="gelu")
    with pytest.raises(ValueError, match="BANScore.*glimpses.*0"):
        build_score("ban", 8, 8, glimpses=0)


def test_formulas_match_definitions():
    torch.manual_seed(0)
    q, k, _, _ = inputs()
    qk = q @ k.transpose(1, 2)
    assert torch.allclose(build_score("dot", 16, 16)(q, k)[:, 0], qk, atol=1e-5)
    assert torch.allclose(build_score("scaled_dot", 16, 16)(q, k)[:, 0], qk / 4, atol=1e-5)
    general = build_score("general", 16, 16)
    assert torch.allclose(general(q, k)[:, 0], q @ general.weight @ k.transpose(1, 2), atol=1e-4)
    kwq = build_score("general", 16, 16, orientation="kwq")
    assert torch.allclose(kwq(q, k)[:, 0], (k @ kwq.weight @ q.transpose(1, 2)).transpose(1, 2), atol=1e-4)
    biased = build_score("biased_general", 16, 16)
    ref = torch.einsum("bid,bjd->bij", q, k @ biased.key_map.weight.T + biased.key_map.bias)
    assert torch.allclose(biased(q, k)[:, 0], ref, atol=1e-4)
    for act, fn in [("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)]:
        s = build_score("activated_general", 16, 16, act=act)
        ref = torch.einsum("bid,bjd->bij", q, k @ s.key_map.weight.T + s.key_map.bias)
        assert torch.allclose(s(q, k)[:, 0], fn(ref), atol=1e-4)
    cos = build_score("cosine", 16, 16, temperature=9.0)
    ref = 9.0 * torch.nn.functional.cosine_similarity(q[:, :, None], k[:, None], dim=-1)
    assert torch.allclose(cos(q, k)[:, 0], ref, atol=1e-4)
    add = build_score("additive", 16, 16, hidden_dim=8)
    i, j = 2, 3
    ref = add.vector.weight @ torch.tanh(add.query_map.weight @ q[0, i] + add.key_map.weight @ k[0, j] + add.key_map.bias)
    assert torch.allclose(add(q, k)[0, 0, i, j], ref.squeeze(), atol=1e-5)


def test_ban_matches_einsum_definition():
    torch.manual_seed(0)
    ban = build_score("ban", 16, 16, glimpses=3, rank=10)
    q, k, _, _ = inputs()
    xu = torch.relu(ban.query_map(q))
    yv = torch.relu(ban.key_map(k))
    ref = torch.einsum("bik,gk,bjk->bgij", xu, ban.glimpse_vectors, yv)
    assert torch.allclose(ban(q, k), ref, atol=1e-5)
    assert ban.rank == 10 and ban.heads == 3
    assert build_score("ban", 16, 16).rank == 48


def test_bilinear_pooling_matches_definition():
    from alignbench.scores import BilinearPooling

    torch.manual_seed(0)
    pool = BilinearPooling(16, 12, out_dim=5, pool=3)
    x, y = torch.randn(2, 4, 16), torch.randn(2, 6, 12)
    att = torch.softmax(torch.randn(2, 24), -1).view(2, 4, 6)
    xu, yv = torch.relu(pool.x_map(x)), torch.relu(pool.y_map(y))
    full = torch.einsum("bik,bij,bjk->bk", xu, att, yv)
    assert torch.allclose(pool(x, y, att), full.view(2, 5, 3).sum(-1), atol=1e-5)
    with pytest.raises(ValueError, match="BilinearPooling: attention must be"):
        pool(x, y, att[:, :3])


def test_user_score_through_target(user_pkg_on_path):
    from hydra.utils import instantiate

    score = instantiate({"_target_": "my_scores.NegSquaredDistanceScore", "scale": 2.0}, q_dim=8, k_dim=6)
    q, k = torch.randn(2, 3, 8), torch.randn(2, 4, 6)
    w = attend(score(q, k), score.normalization)
    assert w.shape == (2, 1, 3, 4) and torch.allclose(w.sum(-1), torch.ones(2, 1, 3))


def test_user_score_through_searchpath(user_pkg_on_path):
    from conftest import USER_CONF

    assert "neg_distance" in list_scores([USER_CONF])
    score = build_score("neg_distance", 8, 6, search_path=[USER_CONF], scale=3.0)
    assert type(score).__name__ == "NegSquaredDistanceScore" and score.scale == 3.0


@pytest.mark.parametrize("name", SCORES)
def test_cross_logits_equal_pairwise_calls(name):
    from alignbench.scores import cross_logits

    score = make(name, 12, 20).eval()
    g = torch.Generator().manual_seed(7)
    queries, keys = torch.randn(3, LQ, 12, generator=g), torch.randn(4, LK, 20, generator=g)
    all_pairs = cross_logits(score, queries, keys)
    assert all_pairs.shape == (4, 3, score.heads, LQ, LK)
    for i in range(4):
        for j in range(3):
            assert torch.allclose(all_pairs[i, j], score(queries[j:j + 1], keys[i:i + 1])[0], atol=1e-5)


def test_cross_logits_for_a_score_without_stages(user_pkg_on_path):
    from alignbench.scores import cross_logits
    from my_scores import NegSquaredDistanceScore

    score = NegSquaredDistanceScore(6, 6)
    q, k = torch.randn(2, 3, 6), torch.randn(5, 4, 6)
    out = cross_logits(score, q, k)
    assert out.shape == (5, 2, 1, 3, 4)
    assert torch.allclose(out[3, 1], score(q[1:2], k[3:4])[0], atol=1e-5)


def test_coattention_marginals_start_soft():
    """At its default initialisation on encoder-scale features (norm ≈ 3), co-attention's
    max-pooled marginals are close to uniform, so training starts from soft attention over
    both modalities (a start at scale 5 peaked them early and retrieval collapsed)."""
    from alignbench.metrics.entropy import attention_entropy

    score = make("coattention", 128, 128)
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(8, 10, 128, generator=g), dim=-1) * 3
    k = torch.relu(torch.randn(8, 16, 128, generator=g))
    k = torch.nn.functional.normalize(k, dim=-1) * 3
    with torch.no_grad():
        w = attend(score(q, k), "co")
    key_entropy = attention_entropy(w[:, 0].sum(-2), torch.ones(8, 16, dtype=torch.bool))
    query_entropy = attention_entropy(w[:, 0].sum(-1), torch.ones(8, 10, dtype=torch.bool))
    assert key_entropy.min() > 0.95 and query_entropy.min() > 0.95, (key_entropy.min(), query_entropy.min())
