"""VQA v2 data module and a tiny end-to-end run on fixture files in the official layout."""

import pickle

import pytest
import torch

from alignbench.cli import main
from alignbench.data.vqa2 import VQA2DataModule
from alignbench.metrics import vqa_accuracy
from alignbench.record import read_record
from test_vqa2_format import IMAGES, QA, regions, write_h5, write_vqa_files


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
