"""VQA v2 data module and a tiny end-to-end run on fixture files in the official layout."""

import logging
import pickle

import pytest
import torch

from alignbench.cli import main
from alignbench.data.vqa2 import VQA2DataModule
from alignbench.metrics import vqa_accuracy
from alignbench.run.record import read_record
from test_vqa2_format import COUNTS, IMAGES, QA, regions, write_counted, write_h5, write_vqa_files


@pytest.fixture
def vqa2_root(tmp_path):
    root = tmp_path / "vqa2"
    (root / "feats").mkdir(parents=True)
    for split in ("train2014", "val2014"):
        write_vqa_files(root, split)
    order = [42, 9, 25]
    for name in ("train", "val"):
        write_h5(root / "feats" / f"{name}3.hdf5", order)
        with open(root / "feats" / f"{name}3_imgid2idx.pkl", "wb") as fh:
            pickle.dump({image_id: row for row, image_id in enumerate(order)}, fh)
    return root


def make(root, **kw):
    args = dict(root=str(root), train_features="feats/train3.hdf5", test_features="feats/val3.hdf5",
                max_regions=4, min_answer_count=1, val_fraction=0.34)
    return VQA2DataModule(**{**args, **kw})


def test_soft_targets_are_official_scores(vqa2_root):
    dm = make(vqa2_root)
    dm.setup()
    test = dm.splits["test"]
    batch = test[list(range(len(test)))]
    assert dm.answer_types == ["yes/no", "number", "other"] and dm.visual_dim == 8
    for i, (_, _, _, answer_type, answers) in enumerate(QA):
        assert batch["answer_type"][i] == answer_type and batch["answers"][i] == answers
        for a, name in enumerate(dm.answers):
            assert batch["target"][i, a].item() == pytest.approx(vqa_accuracy(name, answers))
    # "two" among "2"s is normalised: the target for "2" holds all 9 of them
    assert batch["target"][1, dm.answers.index("2")].item() == 1.0


def test_regions_are_padded_masked_and_exact(vqa2_root):
    dm = make(vqa2_root)
    dm.setup()
    batch = dm.splits["test"][[0, 2]]
    assert batch["regions"].shape == (2, 4, 8) and batch["region_mask"].tolist() == [[True] * 3 + [False]] * 2
    feats, boxes = regions(9)  # image 9 holds question 0
    row = batch["image_row"][0]
    assert torch.equal(batch["regions"][row, :3], torch.from_numpy(feats))
    assert torch.equal(batch["boxes"][row, :3], torch.from_numpy(boxes))
    assert batch["image_wh"][row].tolist() == list(IMAGES[9])
    assert (batch["regions"][:, 3] == 0).all()


def test_missing_files_are_named(tmp_path, vqa2_root):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        make(tmp_path / "nowhere")
    (vqa2_root / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(FileNotFoundError, match="v2_mscoco_val2014_annotations.json"):
        make(vqa2_root).setup()


def test_tiny_vqa2_run(tmp_path, vqa2_root):
    code = main(["train", "task=vqa", "data=vqa2", "preset=tiny", "score=coattention", f"data.root={vqa2_root}",
                 "data.train_features=feats/train3.hdf5", "data.test_features=feats/val3.hdf5",
                 "data.min_answer_count=1", "data.val_fraction=0.34", "data.max_regions=4",
                 f"hydra.run.dir={tmp_path / 'run'}"])
    record = read_record(tmp_path / "run")
    assert code == 0 and record["status"] == "completed", record["error"]
    assert {"test/vqa_acc", "test/vqa_acc/yes/no", "test/vqa_acc/number", "test/vqa_acc/other"} <= set(record["metrics"])
    assert record["data_sizes"] == {"train": 3, "val": 2, "test": 5, "train_images_over_max_regions": 0,
                                    "val_images_over_max_regions": 0, "test_images_over_max_regions": 0}


def over_max_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "alignbench" and "max_regions" in r.getMessage()]


def test_h5_images_over_max_regions_are_counted_and_warned_once_per_split(vqa2_root, caplog):
    """Every image of the fixture's HDF5 files has K=3 boxes; a model keeping 2 drops one."""
    dm = make(vqa2_root, max_regions=2)
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        dm.setup()
        sizes = dm.sizes()  # built once: no second warning
        batch = dm.splits["test"][[0, 2]]
    images = {split: len(dm.splits[split].regions.image_ids) for split in ("train", "val", "test")}
    assert images == {"train": 2, "val": 1, "test": 3}
    assert over_max_warnings(caplog) == [
        f"vqa2: {images[split]} of {images[split]} images of the {split} split in {name} have more than "
        "max_regions=2 regions (up to 3); only the first 2 are used"
        for split, name in (("train", "train3.hdf5"), ("val", "train3.hdf5"), ("test", "val3.hdf5"))]
    assert sizes == {"train": 3, "val": 2, "test": 5, "train_images_over_max_regions": 2,
                     "val_images_over_max_regions": 1, "test_images_over_max_regions": 3}
    assert batch["regions"].shape == (2, 2, 8) and batch["region_mask"].all()
    feats, _ = regions(9)
    assert torch.equal(batch["regions"][batch["image_row"][0]], torch.from_numpy(feats[:2]))  # the first two
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        assert make(vqa2_root, max_regions=3).sizes()["test_images_over_max_regions"] == 0
    assert over_max_warnings(caplog) == []


def test_npz_images_over_max_regions_are_counted(vqa2_root, tmp_path, caplog):
    """Per-image .npz files with 3, 5 and 2 boxes (images 9, 25, 42); the model keeps 4."""
    for name in ("train", "val"):
        (tmp_path / name).mkdir()
        (write_counted(tmp_path / name, "npz")).rename(vqa2_root / "feats" / f"{name}2014")
    dm = make(vqa2_root, train_features="feats/train2014", test_features="feats/val2014")
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        sizes = dm.sizes()
    held_out = dm.splits["val"].regions.image_ids
    over = {"train": int(25 not in held_out), "val": int(25 in held_out), "test": 1}
    assert {k: v for k, v in sizes.items() if "max_regions" in k} == {
        f"{split}_images_over_max_regions": n for split, n in over.items()}
    expected = [f"vqa2: 1 of {len(dm.splits[split].regions.image_ids)} images of the {split} split in "
                f"{'val2014' if split == 'test' else 'train2014'} have more than max_regions=4 regions (up to 5); "
                "only the first 4 are used" for split, n in over.items() if n]
    assert over_max_warnings(caplog) == expected and len(expected) == 2
    store = dm.splits["test"].regions
    batch = dm.splits["test"][list(range(len(QA)))]
    row = batch["image_row"][[e[1] for e in QA].index(25)]
    assert batch["region_mask"][row].all() and torch.equal(batch["regions"][row],
                                                          torch.from_numpy(regions(25, COUNTS[25])[0][:4]))
    assert store.store.num_boxes(25) == 5


def test_empty_question_is_named_and_unknown_characters_are_unk(vqa2_root):
    import json

    path = vqa2_root / "v2_OpenEnded_mscoco_val2014_questions.json"
    data = json.loads(path.read_text())
    data["questions"][2]["question"] = " ?! "  # no words left after tokenising
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"question 250 under .*vqa2.*no words"):
        make(vqa2_root).setup()
    data["questions"][2]["question"] = "What colour is the bús ☂?"  # unseen words and characters
    path.write_text(json.dumps(data))
    dm = make(vqa2_root)
    dm.setup()
    batch = dm.splits["test"][[2]]
    tokens = [dm.vocab.itos[t] for t in batch["question"][0][batch["question_mask"][0]].tolist()]
    # "colour" was never seen in training; "bús" splits into b, ú, s (ú is a token of its own); ☂ likewise
    assert tokens == ["what", "<unk>", "is", "the", "<unk>", "<unk>", "<unk>", "<unk>"]
