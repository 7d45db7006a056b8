"""Text-to-image: data views, generator shapes and masking, evaluators and end-to-end runs."""

import json
import pickle

import pytest
import torch
from PIL import Image

from alignbench.data.cub import CubDataModule
from alignbench.data.synthetic_t2i import SyntheticT2IDataModule, described_objects
from alignbench.models.t2i_evaluators import location_cells, object_targets
from alignbench.models.generation import Generator, masked_mean
from alignbench.models.t2i import matching_loss
from alignbench.config import build_score, list_scores
from alignbench.scores import ScaledDotScore


def small_synthetic(**kw):
    return SyntheticT2IDataModule(train_scenes=60, val_scenes=20, test_scenes=20, **kw)


def test_synthetic_captions_describe_every_object_of_the_render():
    dm = small_synthetic()
    dm.setup()
    split = dm.splits["train"]
    assert split.images.shape[1:] == (3, 32, 32) and split.images.dtype == torch.uint8
    for j in range(0, len(split.texts), 7):
        row = int(split.caption_image[j])
        colours = sorted(c for c in split.objects["colour"][row].tolist() if c >= 0)
        shapes = sorted(s for s in split.objects["shape"][row].tolist() if s >= 0)
        described = split.described[j]
        assert sorted(c for c, _, _ in described) == colours, split.texts[j]
        assert sorted(s for _, s, _ in described) == shapes, split.texts[j]
    assert described_objects("a big red circle on the left and a small blue box") == [(0, 0, "left"), (2, 1, None)]


def test_location_cells_cover_the_band():
    # 32 px, 8 px cells: "left" is x <= 11.2 px -> columns 0 and 1
    cells = location_cells("left", 4, 32)
    assert cells[:, :2].all() and not cells[:, 2:].any()
    corner = location_cells("bottom right", 4, 32)
    assert corner.sum() == 4 and corner[2:, 2:].all()
    assert location_cells(None, 4, 32).all()


def test_object_targets_mark_the_centre_cells():
    objects = {"centre": torch.tensor([[[3.0, 30.0], [20.0, 9.0]]]), "colour": torch.tensor([[2, -1]]),
               "shape": torch.tensor([[1, 0]])}
    present, colour, shape = object_targets(objects, torch.tensor([0]), 4)
    assert present[0, 3, 0] == 1 and present.sum() == 1  # the second slot is empty
    assert colour[0, 3, 0] == 2 and shape[0, 3, 0] == 1 and colour[0, 1, 2] == -1


@pytest.mark.parametrize("name", list_scores())
def test_generator_ignores_padded_words(name):
    torch.manual_seed(0)
    gen = Generator(16, lambda q, k: build_score(name, q, k), image_size=16, channels=32, attention_at=(8, 16)).eval()
    words = torch.randn(2, 5, 16)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    noise = torch.randn(2, 32)
    image, maps = gen(masked_mean(words, mask), words, mask, noise)
    assert image.shape == (2, 3, 16, 16) and 0 <= image.min() and image.max() <= 1
    assert [m.shape[-2:] for m in maps] == [(64, 5), (256, 5)]
    assert torch.all(maps[0][0, :, :, 3:] == 0)
    noisy = words.clone()
    noisy[0, 3:] = 50.0
    image2, _ = gen(masked_mean(noisy, mask), noisy, mask, noise)
    assert torch.allclose(image[0], image2[0], atol=1e-5)


def test_matching_loss_ignores_other_captions_of_the_same_image():
    logits = torch.tensor([[5.0, 5.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    same_image = matching_loss(logits, torch.tensor([0, 0, 1]))
    distinct = matching_loss(logits, torch.tensor([0, 1, 2]))
    assert same_image < distinct


def write_attngan_root(root, n_train=12, n_test=4, size=(20, 16), captions=10):
    keys = {s: [f"{c:03d}.Bird_{c}/Bird_{c}_{s}_{i}" for i in range(n) for c in [i % 3]]
            for s, n in (("train", n_train), ("test", n_test))}
    for split, ks in keys.items():
        (root / split).mkdir(parents=True)
        with open(root / split / "filenames.pickle", "wb") as f:
            pickle.dump(ks, f, protocol=2)
        for i, key in enumerate(ks):
            colour = ("red", "green", "blue")[i % 3]
            (root / "text" / key).parent.mkdir(parents=True, exist_ok=True)
            (root / "text" / f"{key}.txt").write_text(
                "\n".join(f"a {colour} bird number {j}" for j in range(captions)))
            path = root / "images" / f"{key}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, colour).save(path)
    return keys


def test_cub_module_holds_out_val_and_builds_vocab_from_train(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    keys = write_attngan_root(tmp_path / "birds")
    dm = CubDataModule(str(tmp_path / "birds"), image_size=16, crop_to_bbox=False, val_fraction=0.25)
    dm.setup()
    sizes = dm.sizes()
    assert sizes == {"train": 90, "val": 30, "test": 40}
    assert dm.splits["test"].images.shape == (4, 3, 16, 16)
    held = dm.splits["val"].extras["keys"]
    assert len(held) == 3 and not set(held) & set(dm.splits["train"].extras["keys"])
    assert set(held) | set(dm.splits["train"].extras["keys"]) == set(keys["train"])
    again = CubDataModule(str(tmp_path / "birds"), image_size=16, crop_to_bbox=False, val_fraction=0.25)
    again.setup()
    assert again.splits["val"].extras["keys"] == held  # the same split for every run
    assert dm.metadata()["rendered"] is False


def test_cub_module_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CubDataModule(str(tmp_path / "nowhere"))
    write_attngan_root(tmp_path / "birds", captions=3)
    dm = CubDataModule(str(tmp_path / "birds"), image_size=16, crop_to_bbox=False)
    with pytest.raises(ValueError, match=r"text/.*\.txt"):
        dm.setup()


def _run(tmp_path, monkeypatch, overrides):
    from alignbench.cli import main

    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    code = main(["train", "task=t2i", "preset=tiny", f"output_root={out}", "model.g_channels=32",
                 "model.evaluator_epochs=1", *overrides])
    assert code == 0
    (record_path,) = out.rglob("run.json")
    return json.loads(record_path.read_text()), record_path.parent


@pytest.mark.parametrize("score", ["scaled_dot", "ban"])
def test_t2i_run_end_to_end_on_synthetic(tmp_path, monkeypatch, score):
    record, run_dir = _run(tmp_path, monkeypatch, ["data=synthetic", f"score={score}", "data.limit=64"])
    assert record["status"] == "completed", record.get("error")
    m = record["metrics"]
    for key in ("test/r_precision", "test/attribute_acc", "test/fid_feat", "test/attn_entropy", "test/pixel_l1",
                "test/real_r_precision", "test/real_attribute_acc", "test/attn_entropy_8px"):
        assert key in m, key
    assert 0 <= m["test/r_precision"] <= 100 and m["test/fid_feat"] >= 0
    assert record["score_params"] > 0 if score == "ban" else record["score_params"] >= 0
    with Image.open(run_dir / "samples.png") as grid:
        assert grid.size[0] > 200 and grid.size[1] > 100


def test_t2i_run_end_to_end_on_cub_layout(tmp_path, monkeypatch):
    write_attngan_root(tmp_path / "birds", n_train=16, n_test=6, size=(24, 24))
    record, run_dir = _run(tmp_path, monkeypatch, [
        "data=cub_format", f"data.data_path={tmp_path / 'birds'}", "data.image_size=16",
        "data.crop_to_bbox=false", "data.val_fraction=0.25", "data.batch_size=8"])
    assert record["status"] == "completed", record.get("error")
    m = record["metrics"]
    assert "test/r_precision" in m and "test/fid_feat" in m
    assert "test/attribute_acc" not in m and "test/pixel_l1" not in m  # no objects, not renders
    assert (run_dir / "samples.png").is_file()


def test_excluded_distractors_cover_every_caption_true_of_the_scene():
    from alignbench.models.t2i_eval import excluded_distractors

    dm = small_synthetic()
    dm.setup()
    split = dm.splits["test"]
    queries = split.first_caption
    pairs = excluded_distractors(split, queries)
    excluded = set(map(tuple, pairs.T.tolist()))
    # every caption of the query's own image is true of its scene, so the truth check must find it
    for n, q in enumerate(queries.tolist()):
        own = (split.caption_image == split.caption_image[q]).nonzero().squeeze(1).tolist()
        assert all((n, j) in excluded for j in own)
    # and it is selective: most other images' captions stay available as distractors
    assert len(excluded) < 0.2 * len(queries) * len(split.texts)


def test_t2i_tensors_reject_float_images_and_ungrouped_captions():
    from alignbench.data.datasets.t2i import T2ITensors

    tokens, mask = torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.bool)
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    texts = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="uint8.*torch.float32"):
        T2ITensors(tokens, mask, torch.tensor([0, 0, 1, 1]), images.float(), texts)
    with pytest.raises(ValueError, match="caption 1 is of image 1 where image 0"):
        T2ITensors(tokens, mask, torch.tensor([0, 1, 0, 1]), images, texts)
    with pytest.raises(ValueError, match="texts"):
        T2ITensors(tokens, mask, torch.tensor([0, 0, 1, 1]), images, texts[:3])


def test_merge_parts_orders_captions_and_drops_duplicates():
    from alignbench.models.t2i_eval import merge_parts

    def part(ids):
        ids = torch.tensor(ids)
        return {"fake": ids.float()[:, None, None, None].expand(-1, 3, 2, 2), "caption_index": ids,
                "entropy": ids.float()[:, None] / 10, "stages": [8]}

    (merged,) = merge_parts([part([5, 0]), part([3]), part([0, 1])])
    assert merged["caption_index"].tolist() == [0, 1, 3, 5]
    assert merged["fake"][:, 0, 0, 0].tolist() == [0, 1, 3, 5] and merged["stages"] == [8]


def test_pixel_warmup_trains_the_generator_alone_then_the_gan(tmp_path, monkeypatch):
    import pytorch_lightning as pl

    from alignbench.models.t2i import T2IModule

    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    dm = SyntheticT2IDataModule(train_scenes=40, val_scenes=10, test_scenes=10, batch_size=16)
    dm.setup()
    model = T2IModule(ScaledDotScore, g_channels=32, evaluator_epochs=1,
                      pixel_warmup_epochs=1, **dm.metadata())
    assert model.hparams.rendered
    snapshots = []

    class Snap(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(({k: v.clone() for k, v in pl_module.discriminator.state_dict().items()},
                              {k: v.clone() for k, v in pl_module.generator.state_dict().items()},
                              set(trainer.callback_metrics)))

    start = ({k: v.clone() for k, v in model.discriminator.state_dict().items()},
             {k: v.clone() for k, v in model.generator.state_dict().items()})
    pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, callbacks=[Snap()]).fit(model, datamodule=dm)
    def changed(a: dict, b: dict) -> bool:
        return any(not torch.equal(a[k], b[k]) for k in a)

    (d0, g0, logged0), (d1, g1, _) = snapshots
    assert not changed(start[0], d0) and changed(start[1], g0)  # warm-up: the generator alone
    assert "train/d_loss" not in logged0 and "train/pixel" in logged0
    assert changed(d0, d1) and changed(g0, g1)  # then the discriminator trains too


def test_t2i_module_rejects_an_unknown_pixel_loss():
    from alignbench.models.t2i import T2IModule

    with pytest.raises(ValueError, match="pixel_loss must be one of mse, l1, got 'huber'"):
        T2IModule(ScaledDotScore, vocab_size=10, image_size=16, pixel_loss="huber")


def test_synthetic_t2i_view_defaults_to_the_grid_with_full_locations():
    dm = small_synthetic()
    assert dm.scene_config.layout == "grid" and dm.caption_config.full_location
    free = small_synthetic(scene={"layout": "free"})
    assert free.scene_config.layout == "free" and free.scene_config.image_size == 32  # the other defaults stay


def test_pixel_warmup_longer_than_training_warns(tmp_path, monkeypatch, caplog):
    import logging

    import pytorch_lightning as pl

    from alignbench.models.t2i import T2IModule

    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    dm = SyntheticT2IDataModule(train_scenes=20, val_scenes=10, test_scenes=10, batch_size=16)
    dm.setup()
    model = T2IModule(ScaledDotScore, g_channels=16, evaluator_epochs=1,
                      **dm.metadata())  # default warm-up: 3 epochs
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(model, datamodule=dm)
    assert "pixel_warmup_epochs=3 >= max_epochs=1" in caplog.text
