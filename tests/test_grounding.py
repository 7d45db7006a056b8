"""Grounding and faithfulness measures on hand-made cases, and the VQA analysis end to end."""

import itertools
import json

import pytest
import torch

from alignbench.analysis import region_cover
from alignbench.data.synthetic import boxes_mask
from alignbench.metrics.grounding import (aopc, area_share, deletion_order, keep_masks, kendall_tau, mass_inside,
                                          pointing_chance, pointing_hits)


def test_pointing_and_mass_on_hand_made_maps():
    cover = torch.tensor([[0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.25]])
    mass = torch.tensor([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]])
    assert pointing_hits(mass, cover).tolist() == [1.0, 0.0]  # argmax on an object / on background
    assert pointing_chance(cover).tolist() == [0.5, 0.25]  # 2 of 4, 1 of 4 regions touch an object
    assert mass_inside(mass, cover).tolist() == pytest.approx([0.2 * 0.5 + 0.6, 0.1 * 0.25])
    uniform = torch.full((2, 4), 0.25)
    assert mass_inside(uniform, cover).tolist() == pytest.approx(area_share(cover).tolist())


def test_tied_attention_points_and_hides_as_a_random_pick():
    """Regions of equal mass: the pointing hit is the share of the tied regions on the truth
    (uniform attention scores the chance rate, not whatever region is stored first), and the
    attention order meets them in the random order (uniform attention hides at random)."""
    cover = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.2], [0.0, 1.0, 0.0, 0.0]])
    uniform = torch.full((3, 4), 0.25)
    assert pointing_hits(uniform, cover).tolist() == pointing_chance(cover).tolist() == [0.25, 0.5, 0.25]
    two_tied = torch.tensor([[0.4, 0.4, 0.1, 0.1]] * 3)  # regions 0 and 1 tie at the top
    assert pointing_hits(two_tied, cover).tolist() == [0.5, 0.5, 0.5]
    broken = torch.tensor([[float("nan"), 0.2, 0.7, 0.1]] * 3)  # a NaN mass is never the top
    assert pointing_hits(broken, cover).tolist() == [0.0, 0.0, 0.0]
    from alignbench.analysis.protocol import deletion_orders

    orders = deletion_orders(torch.full((5, 6), 1 / 6), torch.Generator().manual_seed(3))
    assert torch.equal(orders["attention"], orders["random"]) and len({tuple(o) for o in orders["random"].tolist()}) > 1
    mass = torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.4, 0.1, 0.2, 0.3]])
    orders = deletion_orders(mass, torch.Generator().manual_seed(0))
    assert orders["attention"][1].tolist() == [0, 3, 2, 1]  # no tie: most-attended first, as by index
    assert orders["attention"][0, 3] == 0 and sorted(orders["attention"][0, :3].tolist()) == [1, 2, 3]
    ties_met = [r for r in orders["random"][0].tolist() if r != 0]
    assert orders["attention"][0, :3].tolist() == ties_met  # the tied three in the random order


def test_deletion_order_masks_and_aopc():
    mass = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    order = deletion_order(mass)
    assert order.tolist() == [[1, 3, 2, 0]]
    assert keep_masks(order, 0.5).tolist() == [[True, False, True, False]]
    assert keep_masks(order, 0.0).all() and keep_masks(order, 1.0).sum() == 1  # one region always stays
    random = deletion_order(mass, torch.Generator().manual_seed(0), random=True)
    assert sorted(random[0].tolist()) == [0, 1, 2, 3]
    assert aopc([80, 70, 60, 40, 20, 10]) == pytest.approx((10 + 20 + 40 + 60 + 70) / 5)
    with pytest.raises(ValueError, match="3 curve points for 6 fractions"):
        aopc([1, 2, 3])


def literal_tau_b(x, y):
    """Kendall's tau-b by its definition, pair by pair."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx * dy > 0:
            concordant += 1
        else:
            discordant += 1
    n0 = concordant + discordant
    return (concordant - discordant) / ((n0 + ties_x) * (n0 + ties_y)) ** 0.5


def test_kendall_tau_matches_its_definition_with_ties():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 5, (40, 9), generator=g).double()  # many ties
    b = torch.randint(0, 5, (40, 9), generator=g).double()
    got = kendall_tau(a, b)
    for row in range(40):
        assert got[row].item() == pytest.approx(literal_tau_b(a[row].tolist(), b[row].tolist()))
    x = torch.arange(6.0)[None]
    assert kendall_tau(x, x).item() == pytest.approx(1.0) and kendall_tau(x, -x).item() == pytest.approx(-1.0)
    assert torch.isnan(kendall_tau(x, torch.ones(1, 6))).all()  # constant importance: undefined


def test_kendall_tau_matches_scipy_tau_b():
    """The reference implementation: scipy.stats.kendalltau (variant b, the default), on ties,
    continuous values and attention-like rows with a few equal masses."""
    from scipy import stats  # a dev dependency: the test always runs in CI
    g = torch.Generator().manual_seed(11)
    cases = [torch.randint(0, 4, (30, 12), generator=g).double(), torch.rand(30, 12, generator=g).double(),
             torch.softmax(torch.randn(30, 36, generator=g), 1).round(decimals=2).double()]
    for a in cases:
        b = a + torch.randn(a.shape, generator=g).double() * 0.1 * (a.max() - a.min())
        b[:, :3] = b[:, :1]  # ties on the other side too
        got = kendall_tau(a, b)
        for row in range(len(a)):
            want = stats.kendalltau(a[row].numpy(), b[row].numpy(), variant="b").statistic
            assert got[row].item() == pytest.approx(want, abs=1e-12)


def test_region_cover_of_boxes():
    mask = boxes_mask(torch.tensor([[0.0, 0.0, 8.0, 8.0], [12.0, 12.0, 16.0, 14.0]]), 16)
    assert int(mask.sum()) == 64 + 8
    cover = region_cover(mask[None], 2)  # four 8x8 cells
    assert cover.tolist() == [[1.0, 0.0, 0.0, 8 / 64]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from alignbench.cli import main

    run_dir = tmp_path_factory.mktemp("analysis") / "run"
    assert main(["train", "task=vqa", "preset=tiny", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"]) == 0
    return run_dir


def test_analysis_is_recorded_and_consistent(tiny_run):
    record = json.loads((tiny_run / "run.json").read_text())
    m, curves = record["metrics"], record["analysis"]
    for key in ("pointing_acc", "pointing_chance", "attn_mass_gt", "attn_mass_chance", "aopc_gain", "tau_ig",
                "tau_loo", "flip_rate"):
        assert f"test/{key}" in m, key
    assert curves["examples"] == 256 and curves["costly_examples"] == 64 and record["analysis_seconds"] > 0
    # nothing deleted: both curves start at the test accuracy of those (all) questions
    assert curves["attention"][0] == pytest.approx(m["test/vqa_acc"]) == pytest.approx(curves["random"][0])
    assert 0 < m["test/pointing_chance"] < 100 and 0 < m["test/attn_mass_chance"] < 100
    assert -1 <= m["test/tau_ig"] <= 1 and -1 <= m["test/tau_loo"] <= 1


def test_uniform_attention_scores_chance_in_the_pointing_game_and_no_deletion_gain(tmp_path):
    """The ``uniform`` control end to end: its pointing accuracy is the chance rate and its
    attention order is the random order (AOPC gain 0), whatever the region order."""
    from alignbench.cli import main

    run_dir = tmp_path / "uniform"
    assert main(["train", "task=vqa", "preset=tiny", "score=uniform", "trainer.max_epochs=1",
                 "analysis.costly_examples=4", f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    m, curves = record["metrics"], record["analysis"]
    assert m["test/pointing_acc"] == pytest.approx(m["test/pointing_chance"], abs=1e-4)
    assert curves["attention"] == curves["random"] and m["test/aopc_gain"] == 0


def test_analyze_command_rewrites_the_record(tiny_run, capsys):
    from alignbench.cli import main

    before = json.loads((tiny_run / "run.json").read_text())
    (tiny_run / "attention_examples.npz").unlink()
    assert main(["analyze", str(tiny_run), "--examples", "64", "--costly-examples", "8"]) == 0
    import numpy as np

    with np.load(tiny_run / "attention_examples.npz") as npz:  # written again, with the ground truth
        assert npz["truth"].shape == (8, 64, 64) and npz["attention"].shape == (8, 8, 8)  # tiny: an 8x8 grid
    after = json.loads((tiny_run / "run.json").read_text())
    assert after["analysis"]["examples"] == 64 and after["analysis"]["costly_examples"] == 8
    assert after["metrics"]["test/vqa_acc"] == before["metrics"]["test/vqa_acc"]  # training results untouched
    assert "pointing_acc" in capsys.readouterr().out
    assert main(["analyze", str(tiny_run.parent / "nope")]) == 2


def test_retrieval_analysis_is_recorded_and_consistent(tmp_path):
    from alignbench.cli import main

    run_dir = tmp_path / "retrieval"
    assert main(["train", "task=retrieval", "data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=30",
                 "model.hidden_dim=32", "model.embed_dim=16", "model.channels=[8,16,16]", "trainer.max_epochs=1",
                 "analysis.costly_examples=8", f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    m, curves = record["metrics"], record["analysis"]
    for key in ("pointing_acc", "pointing_chance", "attn_mass_gt", "attn_mass_chance", "aopc_gain", "tau_ig",
                "tau_loo", "flip_rate"):
        assert f"test/{key}" in m, key
    assert curves["metric"] == "t2i_r1" and curves["images"] == 30 and curves["examples"] == 150
    # the gallery is the whole test split: nothing hidden gives the test t2i R@1
    assert curves["attention"][0] == pytest.approx(m["test/t2i_r1"]) == pytest.approx(curves["random"][0])


def _iou_loop(a, b):
    """IoU of two (x1, y1, x2, y2) boxes with plain floats: the independent reference."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _recall_loop(scores, boxes, gts, ks, thr, mask):
    hits = {k: 0 for k in ks}
    upper = 0
    for i in range(len(scores)):
        regions = [j for j in range(len(scores[i])) if mask[i][j]]
        ranked = sorted(regions, key=lambda j: (-scores[i][j], j))
        good = {j for j in regions if any(_iou_loop(boxes[i][j], g) >= thr for g in gts[i])}
        upper += bool(good)
        for k in ks:
            hits[k] += any(j in good for j in ranked[:k])
    n = len(scores)
    return {**{f"r{k}": 100 * hits[k] / n for k in ks}, "upper_bound": 100 * upper / n}


@pytest.mark.parametrize("seed", range(5))
def test_phrase_recall_at_k_matches_an_independent_loop(seed):
    from alignbench.metrics.grounding import phrase_recall_at_k

    g = torch.Generator().manual_seed(seed)
    p, r = 40, 12
    xy = torch.rand(p, r, 2, generator=g) * 80
    wh = torch.rand(p, r, 2, generator=g) * 40 + 1
    boxes = torch.cat([xy, xy + wh], -1)
    gts = []
    for i in range(p):  # some ground truth near a region, some anywhere
        n = int(torch.randint(1, 3, (1,), generator=g))
        near = boxes[i, torch.randint(0, r, (n,), generator=g)] + torch.randn(n, 4, generator=g) * 6
        gts.append(torch.cat([near[:, :2], torch.maximum(near[:, 2:], near[:, :2] + 1)], -1))
    scores = torch.randn(p, r, generator=g)
    mask = torch.rand(p, r, generator=g) > 0.3
    mask[:, 0] = True
    got = phrase_recall_at_k(scores, boxes, gts, region_mask=mask)
    want = _recall_loop(scores.tolist(), boxes.tolist(), [x.tolist() for x in gts], (1, 5, 10), 0.5, mask.tolist())
    assert got == pytest.approx(want)
    assert got["r1"] <= got["r5"] <= got["r10"] <= got["upper_bound"]


def test_phrase_recall_never_ranks_padding_and_counts_the_threshold_inclusively():
    from alignbench.metrics.grounding import box_iou, phrase_recall_at_k

    region = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]]])
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    assert box_iou(region[0, 1:2], gt[0]).item() == pytest.approx(0.5)  # half the box: IoU exactly 0.5
    scores = torch.tensor([[0.0, 1.0, 9.0]])  # the padded region scores highest
    mask = torch.tensor([[True, True, False]])
    assert phrase_recall_at_k(scores, region, gt, ks=(1,), region_mask=mask) == {"r1": 100.0, "upper_bound": 100.0}
    assert phrase_recall_at_k(scores, region, gt, ks=(1,))["r1"] == 0.0  # unmasked, the far box comes first
    with pytest.raises(ValueError, match="phrase 0 has no ground-truth box"):
        phrase_recall_at_k(scores, region, [torch.zeros(0, 4)])


def test_phrase_recall_breaks_ties_at_random_when_given_a_generator():
    """Equal scores (the uniform control) with the right region stored first: by index R@1 is
    100%, with random tie-breaking it is the chance rate 1/R; distinct scores are unaffected."""
    from alignbench.metrics.grounding import phrase_recall_at_k

    p, r = 2000, 8
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] + [[20.0 + 5 * i, 20.0, 24.0 + 5 * i, 24.0] for i in range(r - 1)])
    region_boxes = boxes.expand(p, r, 4)
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])] * p
    flat = torch.zeros(p, r)
    assert phrase_recall_at_k(flat, region_boxes, gt)["r1"] == 100.0
    shuffled = phrase_recall_at_k(flat, region_boxes, gt, generator=torch.Generator().manual_seed(0))
    assert abs(shuffled["r1"] - 100 / r) < 2.5 and abs(shuffled["r5"] - 500 / r) < 4
    distinct = torch.arange(r, 0, -1).float().expand(p, r)  # the right region scores highest
    assert phrase_recall_at_k(distinct, region_boxes, gt, generator=torch.Generator().manual_seed(0))["r1"] == 100.0
