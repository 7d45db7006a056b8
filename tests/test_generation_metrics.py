"""Text-to-image metrics on hand-made cases and against independent computations."""

import math

import pytest
import torch

from alignbench.metrics.generation import attribute_accuracy, frechet_distance, r_precision


def test_frechet_distance_of_1d_gaussians_has_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 1, generator=g, dtype=torch.float64) * 2.0 + 1.0
    b = torch.randn(200_000, 1, generator=g, dtype=torch.float64) * 0.5 - 1.0
    # (μa − μb)² + (σa − σb)² for one dimension, with the sample moments
    expected = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-6)


def test_frechet_distance_matches_symmetric_square_root():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(400, 6, generator=g) @ torch.randn(6, 6, generator=g) + 0.5
    ca, cb = torch.cov(a.double().T), torch.cov(b.double().T)
    # independent route: tr((Σa Σb)^½) = tr((Σa^½ Σb Σa^½)^½), both square roots by eigh
    w, v = torch.linalg.eigh(ca)
    root_a = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    inner = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    expected = (a.double().mean(0) - b.double().mean(0)).pow(2).sum() + ca.trace() + cb.trace() - 2 * inner
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-7)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_rejects_a_single_sample():
    with pytest.raises(ValueError, match="fake must hold N>=2"):
        frechet_distance(torch.randn(5, 3), torch.randn(1, 3))


def test_frechet_distance_with_a_feature_network_equals_it_on_the_features():
    """Images through a feature network in chunks give the distance of the features themselves.

    In float64: a float32 matmul may round a chunk of 7 rows differently from all 40 (the BLAS
    kernel depends on the shape and the CPU), and the distance's cancellation magnifies that."""
    g = torch.Generator().manual_seed(3)
    real = torch.rand(40, 3, 4, 4, generator=g, dtype=torch.float64)
    fake = torch.rand(30, 3, 4, 4, generator=g, dtype=torch.float64) * 0.8
    weight = torch.randn(48, 6, generator=g, dtype=torch.float64)

    def extract(x):
        return torch.tanh(x.flatten(1) @ weight)

    on_images = frechet_distance(real, fake, extract, chunk=7)
    assert on_images == pytest.approx(frechet_distance(extract(real), extract(fake)), rel=1e-9)
    assert on_images > 0


def test_r_precision_counts_top1_and_ties_as_misses():
    # 4 source images, 2 captions each; features are one-hot per image
    caption_image = torch.arange(4).repeat_interleave(2)
    caption_feats = torch.eye(4)[caption_image]
    images = torch.eye(4)
    # images 0-2 generated from a caption of their own image, image 3 from a caption of image 0
    query = torch.tensor([0, 2, 4, 1])
    # query 3 (caption of image 0) vs distractors from images 1-3: image 3's own caption is a distractor
    assert r_precision(images, caption_feats, caption_image, query, candidates=5) == pytest.approx(75.0)
    # constant features: every candidate ties, so nothing counts as a hit
    assert r_precision(torch.ones(4, 4), torch.ones(8, 4), caption_image, query, candidates=5) == 0.0


def test_r_precision_needs_enough_distractors():
    caption_image = torch.arange(3).repeat_interleave(2)
    with pytest.raises(ValueError, match="distractor"):
        r_precision(torch.randn(3, 4), torch.randn(6, 4), caption_image, torch.tensor([0, 2, 4]), candidates=100)


def test_r_precision_matches_a_literal_loop():
    g = torch.Generator().manual_seed(2)
    caption_image = torch.arange(60).repeat_interleave(5)
    caps, imgs = torch.randn(300, 8, generator=g), torch.randn(40, 8, generator=g)
    query = torch.randint(0, 300, (40,), generator=g)
    imgs = imgs + 2 * caps[query]  # make some hits
    got = r_precision(imgs, caps, caption_image, query, candidates=20, seed=3)
    # the same distractor draw, then a literal comparison per query
    keys = torch.rand(40, 300, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hits = 0
    for n in range(40):
        pool = [j for j in keys[n].argsort().tolist() if caption_image[j] != caption_image[query[n]]][:19]
        cos = [float(torch.cosine_similarity(imgs[n], caps[j], dim=0)) for j in [int(query[n])] + pool]
        hits += all(cos[0] > x for x in cos[1:])
    assert got == pytest.approx(100 * hits / 40)
    assert 0 < got < 100
    # the same in chunks of 7 queries draws other distractors, and stays in range
    assert 0 < r_precision(imgs, caps, caption_image, query, candidates=20, seed=3, chunk=7) < 100


def test_r_precision_never_draws_an_excluded_caption():
    caption_image = torch.arange(4).repeat_interleave(2)
    caption_feats = torch.eye(4)[caption_image]
    images = torch.eye(4)
    images[3] = torch.tensor([0.6, 0.0, 0.0, 0.8])  # generated from caption 1 (image 0), looks more like image 3
    query = torch.tensor([0, 2, 4, 1])
    # all 6 other captions as distractors: image 3's captions beat query 3
    assert r_precision(images, caption_feats, caption_image, query, candidates=7) == pytest.approx(75.0)
    # image 3's captions excluded for query 3 (say, true of its image): it wins
    excluded = torch.tensor([[3, 3], [6, 7]])
    assert r_precision(images, caption_feats, caption_image, query, candidates=5, excluded=excluded) == 100.0
    with pytest.raises(ValueError, match="only 2"):
        r_precision(images, caption_feats, caption_image, query, candidates=5,
                    excluded=torch.tensor([[0, 0, 0, 0], [2, 3, 4, 5]]))


def test_attribute_accuracy_on_a_hand_made_grid():
    g = 2
    objectness = torch.tensor([[[0.9, 0.1], [0.1, 0.8]]])  # detections at (0,0) and (1,1)
    colour = torch.zeros(1, g, g, 3)
    shape = torch.zeros(1, g, g, 2)
    colour[0, 0, 0, 1] = 5  # (0,0): colour 1, shape 0
    colour[0, 1, 1, 2] = 5  # (1,1): colour 2, shape 1
    shape[0, 1, 1, 1] = 5
    everywhere = torch.ones(g, g, dtype=torch.bool)
    top = torch.tensor([[True, True], [False, False]])
    objects = [[
        (1, 0, top),  # right colour and shape at the top: correct
        (2, 1, top),  # the colour-2 shape-1 object is at the bottom: wrong in this region
        (2, 0, everywhere),  # colour 2 at (1,1); shape 0 only at (0,0), already taken by the first
    ]]
    out = attribute_accuracy(objectness, colour, shape, objects)
    assert out["colour_acc"] == pytest.approx(200 / 3)
    assert out["shape_acc"] == pytest.approx(100 / 3)
    assert out["object_acc"] == pytest.approx(100 / 3)
    assert out["attribute_acc"] == pytest.approx(50.0)
    assert math.isclose(attribute_accuracy(objectness * 0, colour, shape, objects)["attribute_acc"], 0.0)
    # one detection cannot serve two described objects of the same colour and shape
    twice = attribute_accuracy(objectness, colour, shape, [[(1, 0, everywhere), (1, 0, everywhere)]])
    assert twice["object_acc"] == pytest.approx(50.0) and twice["colour_acc"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no described objects"):
        attribute_accuracy(objectness, colour, shape, [[]])
