"""Phrase grounding: synthetic phrases and proposals, crop features, targets, the model for
every registered score, and a run end to end."""

import json

import numpy as np
import pytest
import torch

from alignbench.cli import main
from alignbench.config import build_score, list_scores
from alignbench.data.datasets.grounding import crop_features
from alignbench.data.generator.phrases import GroundingConfig, grounding_captions, region_proposals, unique_description
from alignbench.data.generator.scenes import SceneConfig, generate_scenes
from alignbench.data.synthetic import SyntheticGroundingDataModule
from alignbench.metrics.grounding import box_iou
from alignbench.models.grounding import GroundingModule, target_regions


def test_phrases_name_one_object_each_by_their_words():
    scenes = generate_scenes(200, 3, SceneConfig())
    rng = np.random.default_rng(0)
    named = 0
    for scene in scenes:
        for caption in grounding_captions(scene, rng, 2, GroundingConfig()):
            words = caption["caption"].split()
            for start, end, obj in caption["phrases"]:
                assert words[start] == "a" and words[start + 1:end] == unique_description(scene, obj)
                o = scene.objects[obj]
                same = [p for p in scene.objects if p.colour == o.colour and p.shape == o.shape
                        and (end - start == 3 or p.size == o.size)]
                assert same == [o]  # the words pick out exactly this object
                named += 1
    assert named > 300


def test_proposals_make_a_ceiling_below_100_and_are_seeded():
    scene = generate_scenes(1, 5, SceneConfig())[0]
    config = GroundingConfig()
    a = region_proposals(scene, np.random.default_rng(1), 64, config)
    assert a.shape == (config.regions, 4) and (a >= 0).all() and (a <= 64).all() and (a[:, 2:] > a[:, :2]).all()
    assert np.array_equal(a, region_proposals(scene, np.random.default_rng(1), 64, config))
    dm = SyntheticGroundingDataModule(train_scenes=60, val_scenes=20, test_scenes=120)
    dm.setup()
    test = dm.splits["test"]
    batch = test[list(range(len(test)))]
    hit = target_regions(batch["region_boxes"], batch["gt_boxes"], batch["gt_count"], batch["region_mask"], 0.5)
    upper = float(hit.any(1).float().mean() * 100)
    assert 70 < upper < 99  # localisation can fail for lack of a proposal, and mostly cannot


def test_crop_features_read_the_pixels_inside_the_box():
    images = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    images[0, 0, 4:8, 4:8] = 255  # a red 4x4 square
    boxes = torch.tensor([[[4.0, 4.0, 8.0, 8.0], [10.0, 10.0, 14.0, 14.0]]])
    feats = crop_features(images, boxes, crop=2).reshape(1, 2, 3, 2, 2)
    assert torch.allclose(feats[0, 0, 0], torch.ones(2, 2)) and feats[0, 0, 1:].abs().max() == 0
    assert feats[0, 1].abs().max() == 0  # the other box holds background only


def test_target_regions_match_an_independent_loop():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(6, 10, 2, generator=g) * 20
    regions = torch.cat([xy, xy + 2 + torch.rand(6, 10, 2, generator=g) * 10], -1)
    gt = torch.cat([regions[:, :3, :2] + 1, regions[:, :3, 2:] - 1], -1)  # 3 boxes, some near a region
    count = torch.tensor([1, 2, 3, 1, 2, 3])
    mask = torch.ones(6, 10, dtype=torch.bool)
    mask[0, 5:] = False
    got = target_regions(regions, gt, count, mask, 0.5)
    for p in range(6):
        for r in range(10):
            want = mask[p, r] and any(box_iou(regions[p, r][None], gt[p, k][None])[0, 0] >= 0.5
                                      for k in range(int(count[p])))
            assert bool(got[p, r]) == bool(want)


@pytest.mark.parametrize("name", list_scores())
def test_every_score_localises_a_distribution_over_the_valid_regions(name):
    extra = {"glimpses": 1} if name == "ban" else {}
    model = GroundingModule(lambda q_dim, k_dim: build_score(name, q_dim, k_dim, **extra), vocab_size=12,
                            visual_dim=6, hidden_dim=16, embed_dim=8).eval()
    g = torch.Generator().manual_seed(1)
    words = torch.zeros(3, 5, dtype=torch.bool)
    words[0, 0:2], words[1, 1:4], words[2, 3:5] = True, True, True
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False  # padded regions
    boxes = torch.rand(3, 7, 4, generator=g)
    batch = {"caption": torch.randint(2, 12, (3, 5), generator=g), "phrase_words": words,
             "regions": torch.randn(3, 7, 6, generator=g), "region_boxes_norm": boxes, "region_mask": mask}
    where, weights = model.localise(batch)
    assert where.shape == (3, 7) and weights.shape[0] == 3 and weights.shape[-1] == 7
    assert torch.allclose(where.sum(1), torch.ones(3), atol=1e-5)
    assert where[1, 4:].abs().max() == 0  # padding never gets mass


def test_grounding_run_records_ordered_recall_and_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBENCH_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    for score in ("scaled_dot", "uniform"):
        assert main(["train", "task=grounding", "preset=compare/smoke/grounding", f"score={score}",
                     "trainer.enable_progress_bar=false"]) == 0
    records = {}
    for path in (tmp_path / "out").rglob("run.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        records[record["score"]] = (record, path.parent)
    assert set(records) == {"scaled_dot", "uniform"}
    for record, run_dir in records.values():
        m = record["metrics"]
        assert record["status"] == "completed"
        assert m["test/phrase_r1"] <= m["test/phrase_r5"] <= m["test/phrase_r10"] <= m["test/phrase_upper_bound"] < 100
        assert {"test/attn_entropy", "test/attn_mass_gt", "test/attn_mass_chance"} <= set(m)
        with np.load(run_dir / "attention_examples.npz") as npz:
            assert npz["attention"].shape[1:] == (16, 16) and npz["truth"].any()
            assert all("[" in t for t in npz["text"])  # the phrase is marked in its caption
    uniform = records["uniform"][0]["metrics"]
    assert uniform["test/attn_entropy"] == pytest.approx(100.0, abs=1e-3)  # the control never learns where to look
    assert uniform["test/attn_mass_gt"] == pytest.approx(uniform["test/attn_mass_chance"], abs=1e-3)


# --- Flickr30k Entities in the released layout -----------------------------------------------------
def write_flickr30k_entities(tmp_path):
    """The release's folder (split files + Sentences/ + Annotations/, from the reader tests'
    fixture) and per-image .npz region features with their boxes; every split holds the 3 images."""
    from test_flickr30k_entities import IMAGES, write_entities

    root = write_entities(tmp_path)
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in IMAGES), encoding="utf-8")
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for image_id, spec in IMAGES.items():
        boxes = np.array(spec[5], dtype=np.float32)
        np.savez(feats / f"{image_id}.npz", x=rng.standard_normal((len(boxes), 6)).astype(np.float32), bbox=boxes)
    return root, feats


def test_flickr30k_entities_phrases_spans_and_exclusions(tmp_path):
    from alignbench.data.datasets.text import tokenize
    from alignbench.data.flickr30k_entities import Flickr30kEntitiesDataModule

    root, feats = write_flickr30k_entities(tmp_path)
    dm = Flickr30kEntitiesDataModule(root=str(root), features=str(feats), max_regions=6)
    sizes = dm.sizes()
    assert sizes["test"] == 14  # phrases with a box: 5 + 4 + 5
    assert sizes["excluded_test_non_visual"] == 3 and sizes["excluded_test_no_box"] == 4  # hat, street x2, poker
    test = dm.splits["test"]
    batch = test[list(range(len(test)))]
    itos = dm.vocab.itos
    spans = [[itos[t] for t in batch["caption"][p][batch["phrase_words"][p]].tolist()] for p in range(14)]
    assert spans[:4] == [["a", "man"], ["pierced", "ears"], ["ears"], ["earrings"]]
    assert ["a", "man", "'", "s", "friends"] in [tokenize("A man 's friends")] and tokenize("A man 's friends") in spans
    assert batch["gt_count"][0] == 2  # entity 1 has two boxes
    assert torch.equal(batch["gt_boxes"][0, :2], torch.tensor([[0.0, 0, 200, 200], [250, 250, 300, 300]]))
    assert batch["region_mask"].sum(1).eq(4).all() and batch["regions"].shape[1:] == (6, 6)  # 4 real, 2 padded
    hit = target_regions(batch["region_boxes"], batch["gt_boxes"], batch["gt_count"], batch["region_mask"], 0.5)
    assert hit[0].tolist() == [True, False, True, False, False, False]  # a man: regions 0 and 2, not the IoU-0.25 one


@pytest.mark.parametrize("problem, message", [
    ("no_sentences", "Sentences is not a directory"),
    ("no_split", "val.txt not found"),
    ("missing_image", "no region features for image 65567"),
    ("no_features", "region features"),
])
def test_flickr30k_entities_bad_input_is_named(tmp_path, problem, message):
    import shutil

    from alignbench.data.flickr30k_entities import Flickr30kEntitiesDataModule

    root, feats = write_flickr30k_entities(tmp_path)
    if problem == "no_sentences":
        shutil.rmtree(root / "Sentences")
    elif problem == "no_split":
        (root / "val.txt").unlink()
    elif problem == "missing_image":
        (feats / "65567.npz").unlink()
    elif problem == "no_features":
        feats = tmp_path / "nowhere"
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        Flickr30kEntitiesDataModule(root=str(root), features=str(feats))


def test_flickr30k_entities_tiny_run_and_listing(tmp_path, monkeypatch, capsys):
    root, feats = write_flickr30k_entities(tmp_path)
    monkeypatch.setenv("ALIGNBENCH_OUTPUT", str(tmp_path / "out"))
    assert main(["list", "data"]) == 0
    assert "flickr30k_entities" in capsys.readouterr().out
    assert main(["train", "task=grounding", "data=flickr30k_entities", f"data.root={root}", f"data.features={feats}",
                 "score=ban", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "model.hidden_dim=16",
                 "model.embed_dim=8"]) == 0
    record = json.loads(next((tmp_path / "out").rglob("run.json")).read_text(encoding="utf-8"))
    m = record["metrics"]
    assert record["status"] == "completed" and record["data_sizes"]["excluded_test_no_box"] == 4
    assert m["test/phrase_r1"] <= m["test/phrase_r5"] <= m["test/phrase_r10"] <= m["test/phrase_upper_bound"]
    assert m["test/phrase_upper_bound"] == pytest.approx(100.0)  # every fixture phrase has a region over IoU 0.5


def test_flickr30k_entities_regions_of_a_resized_image_are_named(tmp_path):
    from alignbench.data.flickr30k_entities import Flickr30kEntitiesDataModule

    root, feats = write_flickr30k_entities(tmp_path)
    with np.load(feats / "36979.npz") as npz:
        x = npz["x"]
    np.savez(feats / "36979.npz", x=x, bbox=np.array([[0, 0, 900, 700]] * len(x), dtype=np.float32))  # 300x200 image
    dm = Flickr30kEntitiesDataModule(root=str(root), features=str(feats))
    dm.setup()
    test = dm.splits["test"]
    test[[0]]  # an image with sound boxes reads fine
    with pytest.raises(ValueError, match="36979 has region boxes outside its 300x200 pixels"):
        test[list(range(len(test)))]
