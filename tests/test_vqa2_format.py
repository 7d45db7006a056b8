"""VQA v2 readers on tiny fixtures written in the official layouts (K=3 regions, D=8)."""

import base64
import json
import pickle
from collections.abc import Mapping

import h5py
import numpy as np
import pytest

from alignbench.data.readers.vqa2 import (
    RegionFeatureFormatError,
    RegionFeatureStore,
    build_answer_vocab,
    find_vqa2_files,
    open_region_features,
    read_vqa2_split,
)

K, D = 3, 8
IMAGES = {9: (640, 480), 25: (500, 375), 42: (427, 640)}  # image id -> (w, h)
# question id, image id, question, answer type, 10 human answers in answer_id order 1..10
QA = [
    (90, 9, "Is there a cat?", "yes/no", ["yes"] * 8 + ["no", "yes"]),
    (91, 9, "How many dogs?", "number", ["2", "2", "two", "2", "3", "2", "2", "2", "2", "2"]),
    (250, 25, "What color is the bus?", "other", ["red"] * 5 + ["dark red", "red", "maroon", "red", "red"]),
    (420, 42, "Is it raining?", "yes/no", ["no"] * 9 + ["yes"]),
    (421, 42, "What is on the table?", "other", ["pizza"] * 6 + ["food", "pizza", "food", "pizza"]),
]


def regions(image_id, n=K):
    """Deterministic features [n, D] and in-image boxes [n, 4] (x1, y1, x2, y2) in pixels."""
    rng = np.random.default_rng(image_id)
    w, h = IMAGES[image_id]
    xy = rng.uniform(0, 0.5, (n, 2)) * [w, h]
    wh = rng.uniform(0.1, 0.5, (n, 2)) * [w, h]
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return rng.standard_normal((n, D)).astype(np.float32), boxes


def spatial(boxes, w, h):
    """spatial_features [n, 6] as the bottom-up-attention converter computes them."""
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sx, sy, sw, sh = boxes[:, 0] / float(w), boxes[:, 1] / float(h), bw / float(w), bh / float(h)
    return np.stack([sx, sy, sx + sw, sy + sh, sw, sh], 1)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def write_vqa_files(root, split="train2014"):
    order = [3, 7, 1, 10, 5, 2, 9, 4, 8, 6]  # answers listed out of answer_id order, as allowed
    questions = {"info": {"description": "fixture"}, "task_type": "Open-Ended", "data_type": "mscoco",
                 "data_subtype": split, "license": {"name": "CC"},
                 "questions": [{"image_id": i, "question": q, "question_id": qid} for qid, i, q, _, _ in QA]}
    annotations = {"info": {"description": "fixture"}, "data_type": "mscoco", "data_subtype": split,
                   "license": {"name": "CC"}, "annotations": [
                       {"question_id": qid, "image_id": i, "question_type": q.split()[0].lower(),
                        "answer_type": t, "multiple_choice_answer": answers[0],
                        "answers": [{"answer": answers[a - 1], "answer_confidence": "yes", "answer_id": a}
                                    for a in order]}
                       for qid, i, q, t, answers in QA]}
    q = write_json(root / f"v2_OpenEnded_mscoco_{split}_questions.json", questions)
    a = write_json(root / f"v2_mscoco_{split}_annotations.json", annotations)
    return q, a


# ---------------------------------------------------------------- questions / annotations

def test_read_split_with_annotations(tmp_path):
    q, a = write_vqa_files(tmp_path)
    examples = read_vqa2_split(q, a)
    assert examples == [{"question_id": qid, "image_id": i, "question": text, "answers": answers,
                         "answer_type": t} for qid, i, text, t, answers in QA]


def test_read_test_split_has_no_answers(tmp_path):
    q, _ = write_vqa_files(tmp_path, "test2015")
    examples = read_vqa2_split(q)
    assert [e["question_id"] for e in examples] == [x[0] for x in QA]
    assert all(e["answers"] == [] and e["answer_type"] is None for e in examples)


def test_find_files_in_root_and_official_subfolders(tmp_path):
    q, a = write_vqa_files(tmp_path)
    assert find_vqa2_files(tmp_path, "train2014") == (q, a)
    (tmp_path / "Questions").mkdir()
    (tmp_path / "Annotations").mkdir()
    q2 = q.rename(tmp_path / "Questions" / q.name)
    a2 = a.rename(tmp_path / "Annotations" / a.name)
    assert find_vqa2_files(tmp_path, "train2014") == (q2, a2)
    tq, _ = write_vqa_files(tmp_path, "test2015")
    assert find_vqa2_files(tmp_path, "test2015") == (tq, None)


def test_find_files_errors(tmp_path):
    q, a = write_vqa_files(tmp_path, "val2014")
    a.unlink()
    with pytest.raises(FileNotFoundError, match="v2_mscoco_val2014_annotations.json"):
        find_vqa2_files(tmp_path, "val2014")
    with pytest.raises(FileNotFoundError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        find_vqa2_files(tmp_path, "train2014")
    with pytest.raises(ValueError, match="unknown VQA v2 split"):
        find_vqa2_files(tmp_path, "train")


def test_malformed_json(tmp_path):
    q, a = write_vqa_files(tmp_path)
    a.write_text(a.read_text()[:200])
    with pytest.raises(ValueError, match="v2_mscoco_train2014_annotations.json: not valid JSON"):
        read_vqa2_split(q, a)
    data = json.loads(q.read_text())
    write_vqa_files(tmp_path)
    data["questions"].append({"image_id": 9, "question": "Extra?", "question_id": 999})
    write_json(q, data)
    with pytest.raises(ValueError, match="no annotation for question_id 999"):
        read_vqa2_split(q, a)
    del data["questions"][-1]["question"]
    write_json(q, data)
    with pytest.raises(ValueError, match="questions.json: malformed question entry"):
        read_vqa2_split(q)
    _, val_a = write_vqa_files(tmp_path, "val2014")
    with pytest.raises(ValueError, match="is split 'train2014' but"):
        read_vqa2_split(write_vqa_files(tmp_path)[0], val_a)


def test_answer_vocab(tmp_path):
    examples = read_vqa2_split(*write_vqa_files(tmp_path))
    # questions containing each answer: yes 2, no 2, 2 1, 3 1, red 1, ...; "two" is
    # normalised to "2" as the official metric does when the answers differ
    assert build_answer_vocab(examples, min_count=2) == ["no", "yes"]
    assert build_answer_vocab(examples, min_count=1) == [
        "no", "yes", "2", "3", "dark red", "food", "maroon", "pizza", "red"]
    assert build_answer_vocab(examples) == []
    with pytest.raises(ValueError, match="min_count"):
        build_answer_vocab(examples, min_count=0)


# ---------------------------------------------------------------- region features: common

def assert_store(store, n_boxes=None, sizes=True):
    assert isinstance(store, RegionFeatureStore) and isinstance(store, Mapping)
    assert len(store) == len(IMAGES) and set(store) == set(IMAGES) and store.dim == D
    for image_id, (w, h) in IMAGES.items():
        feats, boxes = regions(image_id, (n_boxes or {}).get(image_id, K))
        r = store[np.int64(image_id)]
        assert r.features.dtype == np.float32 and r.boxes.dtype == np.float32
        np.testing.assert_array_equal(r.features, feats)
        np.testing.assert_array_equal(r.boxes, boxes)
        assert (r.image_w, r.image_h) == ((w, h) if sizes else (None, None))
    assert 9 in store and 10 not in store and "9" not in store
    with pytest.raises(KeyError, match=rf"image id 10 not in .*{store.path.name}"):
        store[10]


def test_unknown_layout(tmp_path):
    path = tmp_path / "features.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"features\.bin: unknown region feature layout.*HDF5.*npz.*TSV"):
        open_region_features(path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_region_features(tmp_path / "missing.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: directory holds no .npz files; valid layouts"):
        open_region_features(tmp_path / "empty")


# ---------------------------------------------------------------- HDF5

def write_h5(path, image_ids, with_spatial=True, ids_dataset=False):
    with h5py.File(path, "w") as f:
        feats = f.create_dataset("image_features", (len(image_ids), K, D), "f")
        bb = f.create_dataset("image_bb", (len(image_ids), K, 4), "f")
        sp = f.create_dataset("spatial_features", (len(image_ids), K, 6), "f") if with_spatial else None
        for row, image_id in enumerate(image_ids):
            feats[row], bb[row] = regions(image_id)
            if sp is not None:
                sp[row] = spatial(bb[row], *IMAGES[image_id])
        if ids_dataset:
            f.create_dataset("image_ids", data=np.array(image_ids, dtype=np.int64))
    return path


def test_h5_with_imgid2idx_pickle(tmp_path):
    order = [42, 9, 25]
    path = write_h5(tmp_path / "train3.hdf5", order)
    with open(tmp_path / "train3_imgid2idx.pkl", "wb") as fh:
        pickle.dump({i: row for row, i in enumerate(order)}, fh, protocol=2)
    store = open_region_features(path)
    assert_store(store)
    clone = pickle.loads(pickle.dumps(store))  # as sent to data loader workers
    np.testing.assert_array_equal(clone[25].features, regions(25)[0])
    store.close()
    np.testing.assert_array_equal(store[9].boxes, regions(9)[1])
    moved = (tmp_path / "train3_imgid2idx.pkl").rename(tmp_path / "index.pkl")
    assert_store(open_region_features(path, index_path=moved))
    with pytest.raises(ValueError, match="index_path only applies to HDF5"):
        open_region_features(tmp_path, index_path=moved)


def test_h5_with_image_ids_dataset_and_no_spatial(tmp_path):
    assert_store(open_region_features(write_h5(tmp_path / "val.h5", [25, 42, 9], False, True)), sizes=False)


def write_adaptive_h5(path, counts, ids_dataset=False):
    """The adaptive-boxes HDF5 layout: every image's regions stacked, ``pos_boxes`` [start, end) per image."""
    feats, bbs, pos, start = [], [], [], 0
    for image_id in IMAGES:
        f, b = regions(image_id, counts[image_id])
        feats.append(f), bbs.append(b), pos.append([start, start + len(f)])
        start += len(f)
    with h5py.File(path, "w") as f:
        f.create_dataset("image_features", data=np.concatenate(feats))
        f.create_dataset("image_bb", data=np.concatenate(bbs))
        f.create_dataset("pos_boxes", data=np.array(pos, dtype=np.int32))
        if ids_dataset:
            f.create_dataset("image_ids", data=np.array(list(IMAGES), dtype=np.int64))
    return path


def test_h5_adaptive_boxes(tmp_path):
    counts = {9: 3, 25: 2, 42: 4}
    path = write_adaptive_h5(tmp_path / "train.hdf5", counts)
    with open(tmp_path / "train_imgid2idx.pkl", "wb") as fh:
        pickle.dump({i: row for row, i in enumerate(IMAGES)}, fh)
    assert_store(open_region_features(path), n_boxes=counts, sizes=False)


def test_h5_malformed(tmp_path):
    path = write_h5(tmp_path / "train3.hdf5", list(IMAGES))
    with pytest.raises(RegionFeatureFormatError, match=r"train3\.hdf5: no 'image_ids' dataset and no image id index"):
        open_region_features(path)
    pkl = tmp_path / "train3_imgid2idx.pkl"
    pkl.write_bytes(pickle.dumps({9: 0, 25: 1, 42: 7}))
    with pytest.raises(RegionFeatureFormatError, match=r"train3_imgid2idx\.pkl: rows outside \[0, 3\)"):
        open_region_features(path)
    pkl.write_bytes(pickle.dumps({9: 0})[:-3])
    with pytest.raises(RegionFeatureFormatError, match=r"train3_imgid2idx\.pkl: unreadable"):
        open_region_features(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegionFeatureFormatError, match=r"train3\.hdf5: not a readable HDF5 file"):
        open_region_features(path)
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(RegionFeatureFormatError, match=r"train3\.hdf5: not a readable HDF5 file"):
        open_region_features(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("image_features", (3, K, D), "f")
        f.create_dataset("image_bb", (3, K + 1, 4), "f")
    with pytest.raises(RegionFeatureFormatError, match=r"train3\.hdf5: inconsistent shapes"):
        open_region_features(path)
    with h5py.File(path, "w") as f:  # adaptive layout whose second image ends before it starts
        f.create_dataset("image_features", (6, D), "f")
        f.create_dataset("image_bb", (6, 4), "f")
        f.create_dataset("pos_boxes", data=np.array([[0, 3], [3, 2], [3, 6]], dtype=np.int32))
    with pytest.raises(RegionFeatureFormatError, match=r"train3\.hdf5: inconsistent shapes.*pos_boxes \(3, 2\)"):
        open_region_features(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", (3, K, D), "f")
    with pytest.raises(RegionFeatureFormatError, match=r"needs datasets 'image_features' and 'image_bb'"):
        open_region_features(path)


# ---------------------------------------------------------------- npz directory

def write_npz(path, image_id, transpose=False, **overrides):
    feats, boxes = regions(image_id)
    w, h = IMAGES[image_id]
    info = {"image_id": str(image_id), "image_h": h, "image_w": w, "num_boxes": K}
    arrays = dict(x=feats.T if transpose else feats, bbox=boxes, num_bbox=K, image_h=h, image_w=w, info=info)
    arrays.update(overrides)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def npz_dir(tmp_path):
    root = tmp_path / "train2014"
    root.mkdir()
    write_npz(root / "COCO_train2014_000000000009.jpg.npz", 9)  # x [K, D]
    write_npz(root / "COCO_train2014_000000000025.jpg.npz", 25, transpose=True)  # x [D, K] as MCAN ships
    write_npz(root / "42.npz", 42, transpose=True)
    return root


def test_npz_directory(tmp_path):
    assert_store(open_region_features(npz_dir(tmp_path)))


def test_npz_malformed(tmp_path):
    root = npz_dir(tmp_path)
    bad = root / "COCO_train2014_000000000025.jpg.npz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    store = open_region_features(root)
    np.testing.assert_array_equal(store[9].features, regions(9)[0])
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: unreadable \.npz"):
        store[25]
    bad.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: unreadable \.npz"):
        store[25]
    write_npz(bad, 25, x=np.zeros((K + 1, D + 1), np.float32))
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: x has shape \(4, 9\)"):
        store[25]
    write_npz(bad, 25, bbox=None)
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: missing keys \['bbox'\]"):
        store[25]
    write_npz(bad, 25, x=np.zeros((K, D + 1), np.float32))
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: features have D=9"):
        store[25]
    write_npz(root / "COCO_train2014_0000000000x9.jpg.npz", 9)
    with pytest.raises(RegionFeatureFormatError, match=r"0000000000x9\.jpg\.npz: no image id in the file name"):
        open_region_features(root)
    (root / "COCO_train2014_0000000000x9.jpg.npz").rename(root / "9.npz")
    duplicate = r"train2014/\S*9\.(jpg\.)?npz: image id 9 is also stored in \S*9\.(jpg\.)?npz"
    with pytest.raises(RegionFeatureFormatError, match=duplicate):
        open_region_features(root)


# ---------------------------------------------------------------- TSV

def tsv_line(image_id, boxes_b64=None, features_b64=None, num_boxes=K):
    feats, boxes = regions(image_id)
    w, h = IMAGES[image_id]
    b = boxes_b64 if boxes_b64 is not None else base64.b64encode(boxes.tobytes()).decode()
    f = features_b64 if features_b64 is not None else base64.b64encode(feats.tobytes()).decode()
    # the extraction script writes with Python 2's csv module: tab-separated, "\r\n" line ends
    return "\t".join([str(image_id), str(w), str(h), str(num_boxes), b, f]) + "\r\n"


def test_tsv(tmp_path):
    path = tmp_path / "trainval_resnet101_faster_rcnn_genome_3.tsv"
    path.write_text("".join(tsv_line(i) for i in (25, 9, 42)), newline="")
    assert_store(open_region_features(path))
    shard = tmp_path / "karpathy_train_resnet101_faster_rcnn_genome.tsv.0"
    shard.write_text("".join(tsv_line(i).replace("\r\n", "\n") for i in IMAGES), newline="")
    assert_store(open_region_features(shard))


def test_tsv_malformed(tmp_path):
    path = tmp_path / "features.tsv"
    good = tsv_line(9)
    path.write_text(good + tsv_line(25).replace("\t", " ", 1) + tsv_line(42), newline="")
    columns = r"features\.tsv: line 2 has 5 tab-separated columns, expected 6"
    with pytest.raises(RegionFeatureFormatError, match=columns):
        open_region_features(path)
    short = base64.b64encode(regions(25)[1].tobytes()[:-4]).decode()
    odd = base64.b64encode(regions(42)[0].tobytes() + b"\0\0\0\0").decode()
    path.write_text(good + tsv_line(25, boxes_b64=short) + tsv_line(42, features_b64=odd)
                    + tsv_line(9).replace("9\t", "17\t", 1)[:-40] + "@@@@\r\n", newline="")
    store = open_region_features(path)
    np.testing.assert_array_equal(store[9].features, regions(9)[0])
    boxes_size = r"features\.tsv: line 2: boxes decodes to 44 bytes, not num_boxes=3 x 4 float32"
    with pytest.raises(RegionFeatureFormatError, match=boxes_size):
        store[25]
    features_size = r"features\.tsv: line 3: features decodes to 100 bytes, not num_boxes=3 x D float32"
    with pytest.raises(RegionFeatureFormatError, match=features_size):
        store[42]
    with pytest.raises(RegionFeatureFormatError, match=r"features\.tsv: line 4: features is not valid base64"):
        store[17]
    with pytest.raises(KeyError, match=r"image id 5 not in tsv region features .*features\.tsv"):
        store[5]
    path.write_text(good + good, newline="")
    with pytest.raises(RegionFeatureFormatError, match=r"features\.tsv: line 2: image id 9 repeats line 1"):
        open_region_features(path)


# ---------------------------------------------------------------- region counts (more than max_regions)

COUNTS = {9: 3, 25: 5, 42: 2}  # regions per image: 25 has more than a model keeping 4


def write_counted(tmp_path, layout):
    """The three images with COUNTS regions each, in ``layout``; returns the path to open."""
    if layout == "h5 fixed":  # every image has K boxes
        path = write_h5(tmp_path / "val3.hdf5", list(IMAGES), ids_dataset=True)
        return path
    if layout == "h5 adaptive":
        return write_adaptive_h5(tmp_path / "val.hdf5", COUNTS, ids_dataset=True)
    if layout.startswith("npz"):
        root = tmp_path / "val2014"
        root.mkdir()
        for image_id, n in COUNTS.items():
            feats, boxes = regions(image_id, n)
            num = None if layout == "npz without num_bbox" else n
            write_npz(root / f"COCO_val2014_{image_id:012d}.jpg.npz", image_id, x=feats.T, bbox=boxes, num_bbox=num)
        return root
    path = tmp_path / "val2014_resnet101_faster_rcnn_genome.tsv"
    lines = []
    for image_id, n in COUNTS.items():
        feats, boxes = regions(image_id, n)
        w, h = IMAGES[image_id]
        b64 = [base64.b64encode(a.tobytes()).decode() for a in (boxes, feats)]
        lines.append("\t".join([str(image_id), str(w), str(h), str(n), *b64]) + "\r\n")
    path.write_text("".join(lines), newline="")
    return path


@pytest.mark.parametrize("layout", ["h5 fixed", "h5 adaptive", "npz", "npz without num_bbox", "tsv"])
def test_region_counts_without_reading_features(tmp_path, layout):
    from alignbench.data.readers.vqa2_regions import count_over

    store = open_region_features(write_counted(tmp_path, layout))
    counts = {i: K for i in IMAGES} if layout == "h5 fixed" else COUNTS
    for image_id, n in counts.items():
        assert store.num_boxes(image_id) == n == len(store[image_id].features) == len(store[image_id].boxes)
    ids = sorted(IMAGES)
    if layout == "h5 fixed":
        assert count_over(store, ids, 2) == (3, 3) and count_over(store, ids, 3) == (0, 3)
    else:
        assert count_over(store, ids, 4) == (1, 5) and count_over(store, ids, 2) == (2, 5)
        assert count_over(store, [9, 42], 4) == (0, 3) and count_over(store, [], 4) == (0, 0)
    with pytest.raises(KeyError, match="image id 10 not in"):
        store.num_boxes(10)


def test_region_count_errors_name_the_file(tmp_path):
    root = write_counted(tmp_path, "npz")
    bad = root / "COCO_val2014_000000000025.jpg.npz"
    write_npz(bad, 25, bbox=None, num_bbox=None)
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: missing keys \['bbox'\]"):
        open_region_features(root).num_boxes(25)
    bad.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(RegionFeatureFormatError, match=r"000000000025\.jpg\.npz: unreadable \.npz"):
        open_region_features(root).num_boxes(25)
    path = tmp_path / "features.tsv"
    path.write_text(tsv_line(9) + tsv_line(25).replace("\t3\t", "\tmany\t", 1), newline="")
    with pytest.raises(RegionFeatureFormatError, match=r"features\.tsv: line 2: num_boxes is not a number"):
        open_region_features(path).num_boxes(25)
