"""Every score in conf/score/ is tested here without a test of its own."""

import pytest
import torch

from alignbench.attention import score_attention
from alignbench.config import CONF_DIR
from alignbench.config import build_score, list_scores
from alignbench.scores import NORMALIZATIONS

SCORES = sorted(p.stem for p in (CONF_DIR / "score").glob("*.yaml"))
B, LQ, LK = 3, 5, 7


def takes_glimpses(name):
    """Whether the score's class takes a glimpse count (multi-map scores such as BAN)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from alignbench.config import score_config_path

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
            "additive", "cosine", "coattention", "coattention_maxpool", "ban", "uniform"} <= set(SCORES)


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
    w = score_attention(score, q, k, key_mask, query_mask)
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
    w = score_attention(score, q, k, key_mask, query_mask)
    if score.is_control:  # uniform over the valid keys, whatever the inputs
        rows = key_mask[:, None, None, :].expand_as(w) & query_mask[:, None, :, None]
        assert torch.allclose(w[rows], (1 / key_mask.sum(1)).float()[:, None, None, None].expand_as(w)[rows])
        assert not list(score.parameters())
        return
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
    base = score_attention(score, q, k, key_mask, query_mask)
    extra = torch.randn(B, 4, k.shape[-1]) * 50
    k2 = torch.cat([k, extra], dim=1)
    mask2 = torch.cat([key_mask, torch.zeros(B, 4, dtype=torch.bool)], dim=1)
    w2 = score_attention(score, q, k2, mask2, query_mask)
    assert torch.allclose(w2[..., :LK], base, atol=1e-6)
    assert (w2[..., LK:] == 0).all()
    q3 = torch.cat([q, torch.randn(B, 3, q.shape[-1]) * 50], dim=1)  # padded queries, with large features
    qmask3 = torch.cat([query_mask, torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    w3 = score_attention(score, q3, k, key_mask, qmask3)
    assert torch.allclose(w3[:, :, :LQ], base, atol=1e-6) and (w3[:, :, LQ:] == 0).all()


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
        s = build_score("activated_general", 16, 16, act=act, temperature=2.0)
        ref = torch.einsum("bid,bjd->bij", q, k @ s.key_map.weight.T + s.key_map.bias)
        assert torch.allclose(s(q, k)[:, 0], 2.0 * fn(ref), atol=1e-4)
    uniform = build_score("uniform", 16, 16)
    assert torch.equal(uniform(q, k), torch.zeros(B, 1, LQ, LK))
    cos = build_score("cosine", 16, 16, temperature=9.0)
    ref = 9.0 * torch.nn.functional.cosine_similarity(q[:, :, None], k[:, None], dim=-1)
    assert torch.allclose(cos(q, k)[:, 0], ref, atol=1e-4)
    with torch.no_grad():
        cos.temperature.log_value.fill_(0.0)  # the temperature is learned: s = exp(log s)
    assert torch.allclose(cos(q, k)[:, 0], ref / 9.0, atol=1e-5)
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
    w = score_attention(score, q, k)
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


def _bounded_initial(name):
    from omegaconf import OmegaConf

    from alignbench.config import score_config_path

    return OmegaConf.load(score_config_path(name)).get("temperature")


def test_bounded_scores_share_one_scaling_rule():
    """Every score with bounded logits has a learned temperature with the same initial value,
    declared in its YAML; no unbounded score has one (DESIGN: rules of a fair comparison)."""
    from alignbench.scores import LearnedTemperature

    bounded = [n for n in SCORES if make(n).bounded]
    assert {"cosine", "activated_general", "coattention_maxpool"} <= set(bounded)
    assert "coattention" not in bounded and "dot" not in bounded
    initial = {_bounded_initial(n) for n in bounded}
    assert len(initial) == 1 and None not in initial, initial
    for name in SCORES:
        temps = [m for m in make(name).modules() if isinstance(m, LearnedTemperature)]
        assert len(temps) == (1 if name in bounded else 0), name
        if temps:
            assert temps[0].value == pytest.approx(next(iter(initial)))
            assert temps[0].log_value.requires_grad


def test_lu_coattention_matches_its_equations():
    """An independent transcription of Lu et al. (2016) eq. 3-4 on one unpadded and one
    padded sample: H_v = tanh(W_v V + (W_q Q) C), a_v = softmax(w_hvᵀ H_v), and symmetrically."""
    score = make("coattention", 16, 16, seed=3)
    q, k, key_mask, query_mask = inputs()
    w = score_attention(score, q, k, key_mask, query_mask)
    for b in range(B):
        Q, V = q[b][query_mask[b]].T, k[b][key_mask[b]].T  # [d, T], [d, N] as in the paper
        C = torch.tanh(Q.T @ score.weight @ V)  # [T, N]
        Wq, Wv = score.query_map.weight, score.key_map.weight
        H_v = torch.tanh(Wv @ V + (Wq @ Q) @ C)
        H_q = torch.tanh(Wq @ Q + (Wv @ V) @ C.T)
        a_v = torch.softmax(score.key_vector.weight @ H_v, dim=-1)[0]
        a_q = torch.softmax(score.query_vector.weight @ H_q, dim=-1)[0]
        got = w[b, 0][query_mask[b]][:, key_mask[b]]
        assert torch.allclose(got, a_q[:, None] * a_v[None, :], atol=1e-5)


def test_coattention_variants_differ_in_learned_marginals():
    lu, maxpool = make("coattention", 32, 32), make("coattention_maxpool", 32, 32)
    n = lambda s: sum(p.numel() for p in s.parameters())  # noqa: E731
    assert n(lu) > n(maxpool)
    q, k, key_mask, query_mask = inputs(32, 32)
    w = score_attention(maxpool, q, k, key_mask, query_mask)
    logits = maxpool(q, k)[:, 0]
    b = 0  # unpadded: each marginal is a softmax of the strongest affinity to the other side
    assert torch.allclose(w[b, 0].sum(0), torch.softmax(logits[b].amax(0), -1), atol=1e-5)
    assert torch.allclose(w[b, 0].sum(1), torch.softmax(logits[b].amax(1), -1), atol=1e-5)


def test_multi_map_scores_take_one_query_sequence_per_map():
    """BAN's one-call score_heads equals the generic per-map blocks and, map by map, a call on that map's queries."""
    from alignbench.scores import AlignmentScore

    ban = make("ban", 16, 16)
    g = torch.Generator().manual_seed(2)
    queries, k = torch.randn(B, 2, LQ, 16, generator=g), torch.randn(B, LK, 16, generator=g)
    fast = ban.score_heads(queries, k)
    assert torch.allclose(fast, AlignmentScore.score_heads(ban, queries, k), atol=1e-5)
    for h in range(2):
        assert torch.allclose(fast[:, h], ban(queries[:, h], k)[:, h], atol=1e-5)
