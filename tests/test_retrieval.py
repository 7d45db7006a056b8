"""Retrieval model pieces and end-to-end runs on synthetic captions and the SCAN layout."""

import pytest
import torch
from torch.nn import functional as F

from alignbench.cli import main
from alignbench.config import group_options
from alignbench.models.matching import CrossAttentionMatcher, chunked_similarity, scan_raw_treatment
from alignbench.models.retrieval import hardest_negative_hinge
from alignbench.run.record import read_record
from alignbench.config import build_score
from alignbench.scores import DotScore, ScaledDotScore
from test_scores import takes_glimpses
from test_scan_format import write_precomp

SCORES = group_options("score")


def matcher(name, dim=8, **kw):
    torch.manual_seed(0)
    extra = {"glimpses": 1} if takes_glimpses(name) else {}
    return CrossAttentionMatcher(lambda: build_score(name, dim, dim, **extra), **kw).eval()


def data(ni=5, nc=7, lq=6, lk=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    words, regions = torch.randn(nc, lq, dim, generator=g), torch.randn(ni, lk, dim, generator=g)
    lengths = torch.tensor([6, 3, 5, 2, 6, 4, 1])[:nc]
    return words, torch.arange(lq)[None] < lengths[:, None], regions


@pytest.mark.parametrize("hardest", [True, False])
def test_hinge_matches_brute_force(hardest):
    g = torch.Generator().manual_seed(0)
    sims = torch.randn(3, 5, generator=g)
    image_row = torch.tensor([0, 1, 1, 2, 0])
    margin, expected = 0.2, 0.0
    pool = max if hardest else sum
    for j in range(5):
        i = image_row[j]
        pos = sims[i, j]
        expected += pool([max(0.0, margin + sims[k, j] - pos) for k in range(3) if k != i] + [0.0])
        expected += pool([max(0.0, margin + sims[i, c] - pos) for c in range(5) if image_row[c] != i] + [0.0])
    loss = hardest_negative_hinge(sims, image_row, margin, hardest=hardest)
    assert loss.item() == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("name", SCORES)
def test_chunks_equal_one_block_and_padding_is_ignored(name):
    m = matcher(name)
    words, mask, regions = data()
    with torch.no_grad():
        full, _ = m(words, mask, regions)
        chunked = chunked_similarity(m, words, mask, regions, image_chunk=2, caption_chunk=3)
        assert full.shape == (5, 7)
        assert torch.allclose(full, chunked, atol=1e-5)
        # padded word positions never change a similarity
        noisy = words.clone()
        noisy[~mask] = 100.0
        assert torch.allclose(m(noisy, mask, regions)[0], full, atol=1e-5)
        # each pair's similarity does not depend on the other images or captions
        assert torch.allclose(m(words[2:3], mask[2:3], regions[1:2])[0][0, 0], full[1, 2], atol=1e-5)


def test_cosine_with_scan_treatment_is_scan_t2i():
    m = matcher("cosine", scan_treatment="on", temperature=9.0)
    assert m.treat
    with torch.no_grad():
        m.score.temperature.log_value.fill_(0.0)  # SCAN's raw cosine (s = 1) before its treatment
    words, mask, regions = data(ni=1, nc=1)
    n = int(mask[0].sum())
    w, r = words[0, :n], regions[0]
    raw = F.normalize(w, dim=-1) @ F.normalize(r, dim=-1).T  # cosine [n, R]
    attn = torch.softmax(9.0 * F.normalize(F.leaky_relu(raw, 0.1), dim=0), dim=1)
    context = attn @ r
    expected = F.cosine_similarity(w, context, dim=-1).mean()
    with torch.no_grad():
        assert m(words, mask, regions)[0].item() == pytest.approx(expected.item(), abs=1e-5)
    lse = matcher("cosine", scan_treatment="on", aggregation="lse", lse_lambda=6.0)
    with torch.no_grad():
        lse.score.temperature.log_value.fill_(0.0)
        expected_lse = torch.logsumexp(6.0 * F.cosine_similarity(w, context, dim=-1), 0) / 6.0
        assert lse(words, mask, regions)[0].item() == pytest.approx(expected_lse.item(), abs=1e-5)


def test_scan_treatment_rules():
    """Never switched on by a score's class: off for every score unless asked, then for any row score."""
    assert not any(matcher(name).treat for name in SCORES)
    assert matcher("scaled_dot", scan_treatment="on").treat and matcher("cosine", scan_treatment="on").treat
    with pytest.raises(ValueError, match="unknown scan_treatment 'auto'; valid: off, on"):
        matcher("cosine", scan_treatment="auto")
    with pytest.raises(ValueError, match="scan_treatment applies to row-normalised scores, not BANScore"):
        matcher("ban", scan_treatment="on")
    with pytest.raises(ValueError, match="unknown aggregation 'max'; valid: mean, lse"):
        matcher("dot", aggregation="max")
    logits = torch.randn(2, 1, 3, 4)
    qmask = torch.tensor([[True, True, False], [True] * 3])
    out = scan_raw_treatment(logits, qmask, 9.0)
    assert (out[0, :, 2] == 0).all() and torch.allclose(out.norm(dim=2)[1], torch.full((1, 4), 9.0), atol=1e-4)


def test_tiny_synthetic_retrieval_run(tmp_path):
    assert main(["train", "task=retrieval", "data=synthetic", "preset=tiny", "score=coattention",
                 f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    record = read_record(tmp_path / "run")
    assert record["status"] == "completed", record["error"]
    m = record["metrics"]
    keys = {f"test/{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert keys <= set(m) and {"test/rsum", "test/attn_entropy", "test/i2t_medr"} <= set(m)
    assert m["test/rsum"] == pytest.approx(sum(m[k] for k in keys), abs=1e-3)
    assert record["history"][0]["train/loss"] > 0


def test_tiny_scan_precomp_run(tmp_path):
    for split in ("train", "dev", "test"):
        write_precomp(tmp_path, split)
    assert main(["train", "task=retrieval", "data=scan_precomp", "preset=tiny", "score=scaled_dot",
                 f"data.data_path={tmp_path}", "data.batch_size=4", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    record = read_record(tmp_path / "run")
    assert record["status"] == "completed", record["error"]
    assert record["data_sizes"] == {"train": 15, "val": 15, "test": 15}


def test_scan_precomp_missing_folder_is_named(tmp_path):
    from alignbench.data.scan_precomp import ScanPrecompDataModule

    with pytest.raises(FileNotFoundError, match="f30k_precomp is not a directory"):
        ScanPrecompDataModule(data_path=str(tmp_path))


@pytest.mark.parametrize("name", SCORES)
def test_gradients_stay_finite_with_padding(name):
    m = matcher(name).train()
    words, mask, regions = data()
    words.requires_grad_(True)
    regions.requires_grad_(True)
    sims, _ = m(words, mask, regions)
    hardest_negative_hinge(sims, torch.tensor([0, 1, 2, 3, 4, 0, 1]), 0.2).backward()
    for t in [words, regions, *m.parameters()]:
        assert t.grad is None or torch.isfinite(t.grad).all(), name


def test_bidirectional_text_encoder_ignores_padding():
    from alignbench.models.encoders import TextEncoder

    torch.manual_seed(0)
    enc = TextEncoder(20, 8, 6, bidirectional=True).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]])
    out = enc(tokens)
    assert out.shape == (2, 5, 6)
    assert torch.all(out[0, 3:] == 0)
    # the same caption without padding, alone: identical word features (the backward
    # pass starts at the last valid word, not at the padding)
    assert torch.allclose(enc(tokens[:1, :3]), out[:1, :3], atol=1e-6)
    # the backward direction is used: a later word changes an earlier word's feature
    changed = enc(torch.tensor([[3, 4, 7, 0, 0]]))
    assert not torch.allclose(changed[0, 0], out[0, 0])


def test_warmup_epochs_train_on_all_negatives_first():
    from alignbench.models.retrieval import RetrievalModule

    def module(warmup):
        torch.manual_seed(0)
        return RetrievalModule(ScaledDotScore, vocab_size=9, visual="regions",
                               visual_dim=8, hidden_dim=8, embed_dim=4, warmup_epochs=warmup)

    g = torch.Generator().manual_seed(0)
    batch = {"caption": torch.randint(1, 9, (6, 4), generator=g), "caption_mask": torch.ones(6, 4, dtype=torch.bool),
             "regions": torch.randn(3, 5, 8, generator=g), "image_row": torch.tensor([0, 0, 1, 1, 2, 2])}
    warm, hard = module(1), module(0)  # epoch 0: inside the warm-up for the first only
    with torch.no_grad():
        sims, _ = hard.matcher(hard.text(batch["caption"]), batch["caption_mask"], hard.vision(batch["regions"]))
        expected_all = hardest_negative_hinge(sims, batch["image_row"], 0.2, hardest=False)
        expected_hard = hardest_negative_hinge(sims, batch["image_row"], 0.2, hardest=True)
        assert warm.training_step(batch, 0).item() == pytest.approx(expected_all.item(), rel=1e-5)
        assert hard.training_step(batch, 0).item() == pytest.approx(expected_hard.item(), rel=1e-5)
    assert expected_all > expected_hard


def test_unknown_lr_schedule_is_named():
    from alignbench.models.retrieval import RetrievalModule

    with pytest.raises(ValueError, match="'linear'.*cosine, constant"):
        RetrievalModule(DotScore, vocab_size=5, visual="regions", visual_dim=4,
                        lr_schedule="linear")


def _eval_parts(ids_per_batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    regions_all, words_all = torch.randn(6, 3, 4, generator=g), torch.randn(12, 5, 4, generator=g)
    lengths = torch.tensor([5, 2, 3, 4, 1, 5, 2, 2, 3, 5, 4, 1])
    parts = []
    for ids in ids_per_batch:
        caps = torch.tensor([c for i in ids for c in (2 * i, 2 * i + 1)])
        width = int(lengths[caps].max())
        mask = torch.arange(width)[None] < lengths[caps][:, None]
        parts.append((regions_all[ids], None, words_all[caps, :width], mask, torch.tensor(ids).repeat_interleave(2),
                      torch.tensor(ids)))
    return parts


def _same_eval_set(a, b):
    """Equal merged sets; words are compared at valid positions only (padding is free)."""
    (ra, rma, wa, ma, ca), (rb, rmb, wb, mb, cb) = a, b
    assert torch.equal(ra, rb) and rma is None and rmb is None
    assert torch.equal(ma, mb) and torch.equal(ca, cb)
    assert torch.equal(wa * ma[..., None], wb * mb[..., None])


def test_merge_eval_parts_orders_images_and_drops_duplicates():
    from alignbench.models.retrieval import merge_eval_parts

    whole = merge_eval_parts(_eval_parts([[0, 1, 2, 3, 4, 5]]))
    # shards as two processes would see them, out of order and with an image given twice
    shards = merge_eval_parts(_eval_parts([[3, 4], [0, 1, 2], [5, 0]]))
    _same_eval_set(whole, shards)
    assert whole[4].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def _gather_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    from alignbench.models.retrieval import merge_eval_parts

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    shard = [[0, 2], [4]] if rank == 0 else [[1, 3], [5, 0]]  # image 0 on both processes
    merged = merge_eval_parts(_eval_parts(shard))
    torch.save(merged, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_merge_eval_parts_gathers_across_processes(tmp_path):
    import torch.multiprocessing as mp

    from alignbench.models.retrieval import merge_eval_parts

    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    whole = merge_eval_parts(_eval_parts([[0, 1, 2, 3, 4, 5]]))
    for rank in (0, 1):
        _same_eval_set(whole, torch.load(tmp_path / f"rank{rank}.pt"))


def test_co_attention_gives_every_word_the_same_context():
    """Under co-attention (outer-product map) SCAN's per-word context is one shared vector:
    sim = Σ_i a_i cos(w_i, Σ_j b_j v_j) with a, b the query and key marginals."""
    m = matcher("coattention_maxpool")
    words, mask, regions = data(ni=2, nc=3)
    with torch.no_grad():
        sims, weights = m(words, mask, regions)
        for i in range(2):
            for c in range(3):
                a, b = weights[i, c, 0].sum(-1), weights[i, c, 0].sum(-2)  # marginals
                n = int(mask[c].sum())
                context = b @ regions[i]
                expected = (a[:n] * F.cosine_similarity(words[c, :n], context[None], dim=-1)).sum()
                assert sims[i, c].item() == pytest.approx(expected.item(), abs=1e-5)

