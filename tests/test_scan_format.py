"""SCAN precomp and Karpathy split readers on tiny fixtures in the official layouts.

Precomp fixtures: N=3 images, R=4 regions, D=6, 5 consecutive captions per image.
"""

import json

import numpy as np
import pytest

from alignbench.data.readers.scan import (
    ScanSplit,
    check_alignment,
    precomp_folder,
    read_karpathy_captions,
    read_scan_precomp,
)

N, R, D = 3, 4, 6
CAPTIONS = [f"A photo number {i} of image {i // 5} ." for i in range(5 * N)]


def features(n=N):
    """Deterministic float32 features [n, R, D]."""
    return np.random.default_rng(0).standard_normal((n, R, D)).astype(np.float32)


def write_precomp(tmp_path, split="test", ims=None, caps=None, caps_text=None):
    """Write ``{split}_ims.npy`` / ``{split}_caps.txt`` into ``<tmp>/f30k_precomp``."""
    folder = tmp_path / "f30k_precomp"
    folder.mkdir(exist_ok=True)
    np.save(folder / f"{split}_ims.npy", features() if ims is None else ims)
    text = caps_text if caps_text is not None else "".join(c + "\n" for c in (CAPTIONS if caps is None else caps))
    (folder / f"{split}_caps.txt").write_bytes(text.encode("utf-8"))
    return folder


@pytest.mark.parametrize("mmap", [True, False])
def test_reads_five_captions_per_image(tmp_path, mmap):
    folder = write_precomp(tmp_path)
    s = read_scan_precomp(folder, "test", mmap=mmap)
    assert s.images.shape == (N, R, D) and s.images.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(s.images), features())
    assert isinstance(s.images, np.memmap) == mmap
    assert s.captions == CAPTIONS
    np.testing.assert_array_equal(s.caption_image, [0] * 5 + [1] * 5 + [2] * 5)
    assert s.caption_image.dtype == np.int64
    assert s.captions_per_image == 5 and s.num_images == N
    assert s.ims_path == folder / "test_ims.npy" and s.caps_path == folder / "test_caps.txt"


def test_captions_stripped_crlf_and_no_final_newline(tmp_path):
    text = "\r\n".join(f"  {c}\t" for c in CAPTIONS)  # Windows endings, padding, no final newline
    folder = write_precomp(tmp_path, split="testall", caps_text=text)
    assert read_scan_precomp(folder, "testall").captions == CAPTIONS


def test_one_row_per_caption(tmp_path):
    """SCAN's im_div = 1 case: as many feature rows as captions."""
    ims = np.repeat(features(), 5, axis=0)
    folder = write_precomp(tmp_path, split="dev", ims=ims)
    s = read_scan_precomp(folder, "dev")
    assert s.captions_per_image == 1 and s.num_images == 5 * N
    np.testing.assert_array_equal(s.caption_image, np.arange(5 * N))
    np.testing.assert_array_equal(np.asarray(s.images), ims)


def test_precomp_folder():
    assert precomp_folder("/data", "f30k") == precomp_folder("/data", "f30k_precomp")
    assert str(precomp_folder("/data", "coco")).endswith("coco_precomp")


@pytest.mark.parametrize("missing", ["test_ims.npy", "test_caps.txt"])
def test_missing_file_named(tmp_path, missing):
    folder = write_precomp(tmp_path)
    write_precomp(tmp_path, split="train")
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing) as e:
        read_scan_precomp(folder, "test")
    assert str(folder / missing) in str(e.value) and "train" in str(e.value)


@pytest.mark.parametrize("n_caps", [14, 16, 5])
def test_caption_count_mismatch(tmp_path, n_caps):
    folder = write_precomp(tmp_path, caps=[f"caption {i}" for i in range(n_caps)])
    with pytest.raises(ValueError, match=f"{n_caps} captions for {N} image rows") as e:
        read_scan_precomp(folder, "test")
    assert "test_caps.txt" in str(e.value) and "test_ims.npy" in str(e.value)


@pytest.mark.parametrize("shape", [(N, R * D), (N, R, D, 1), (5 * N,)])
def test_wrong_rank(tmp_path, shape):
    folder = write_precomp(tmp_path, ims=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"test_ims\.npy.*3-D"):
        read_scan_precomp(folder, "test")


def test_non_float_features(tmp_path):
    folder = write_precomp(tmp_path, ims=np.zeros((N, R, D), np.int32))
    with pytest.raises(ValueError, match=r"test_ims\.npy.*floating"):
        read_scan_precomp(folder, "test")


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("cut", [-10, 50, 0])
def test_truncated_or_corrupt_npy(tmp_path, mmap, cut):
    folder = write_precomp(tmp_path)
    path = folder / "test_ims.npy"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match=r"test_ims\.npy: not a readable"):
        read_scan_precomp(folder, "test", mmap=mmap)


def test_pickled_npy_rejected(tmp_path):
    folder = write_precomp(tmp_path, ims=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"test_ims\.npy: not a readable"):
        read_scan_precomp(folder, "test")


def test_npz_under_npy_name_rejected(tmp_path):
    folder = write_precomp(tmp_path)
    with open(folder / "test_ims.npy", "wb") as f:
        np.savez(f, features=features())
    with pytest.raises(ValueError, match=r"test_ims\.npy: expected a single \.npy array"):
        read_scan_precomp(folder, "test")


def test_empty_split(tmp_path):
    folder = write_precomp(tmp_path, ims=np.zeros((0, R, D), np.float32), caps_text="")
    with pytest.raises(ValueError, match=r"test_ims\.npy.*test_caps\.txt: empty split"):
        read_scan_precomp(folder, "test")


def test_empty_caption_line_named(tmp_path):
    lines = list(CAPTIONS)
    lines[6] = "   "
    folder = write_precomp(tmp_path, caps=lines)
    with pytest.raises(ValueError, match=r"test_caps\.txt: line 7 is an empty caption"):
        read_scan_precomp(folder, "test")


def test_trailing_blank_line_named(tmp_path):
    folder = write_precomp(tmp_path, caps_text="".join(c + "\n" for c in CAPTIONS) + "\n")
    with pytest.raises(ValueError, match=r"test_caps\.txt: line 16 is an empty caption"):
        read_scan_precomp(folder, "test")


def test_non_utf8_caption_named(tmp_path):
    folder = write_precomp(tmp_path)
    path = folder / "test_caps.txt"
    path.write_bytes(path.read_bytes().replace(b"photo number 3", b"photo \xff 3"))
    with pytest.raises(ValueError, match=r"test_caps\.txt: line 4 is not valid UTF-8"):
        read_scan_precomp(folder, "test")


def test_check_alignment():
    good = ScanSplit(features(), list(CAPTIONS), np.arange(5 * N) // 5, 5)
    check_alignment(good)
    bad_map = ScanSplit(features(), list(CAPTIONS), np.arange(5 * N) % N, 5)
    with pytest.raises(ValueError, match="caption_image"):
        check_alignment(bad_map)
    with pytest.raises(ValueError, match="captions_per_image must be 1 or 5"):
        check_alignment(ScanSplit(features(), CAPTIONS[:6], np.arange(6) // 2, 2))
    with pytest.raises(ValueError, match="no captions"):
        check_alignment(ScanSplit(features(), [], np.zeros(0, np.int64), 5))
    with pytest.raises(ValueError, match="3-D"):
        check_alignment(ScanSplit(features()[0], list(CAPTIONS), np.arange(5 * N) // 5, 5))


# Karpathy split JSON with the key structure of dataset_coco.json (flickr files omit
# filepath / cocoid). Image 2 has 6 sentences, as some COCO images do.
def karpathy_entry(imgid, split, n_sent=5):
    sentids = [10 * imgid + k for k in range(n_sent)]
    sentences = [{"tokens": ["a", "cat", str(imgid), str(k)], "raw": f"A cat {imgid}, {k}. ",
                  "imgid": imgid, "sentid": sid} for k, sid in enumerate(sentids)]
    return {"filepath": "val2014", "sentids": sentids, "filename": f"COCO_val2014_{imgid:012d}.jpg",
            "imgid": imgid, "split": split, "sentences": sentences, "cocoid": 1000 + imgid}


SPLITS = ["test", "train", "restval", "val", "train", "test"]


def raws(imgid, n_sent=5):
    return [f"A cat {imgid}, {k}." for k in range(n_sent)]


@pytest.fixture
def karpathy_json(tmp_path):
    images = [karpathy_entry(i, s, n_sent=6 if i == 2 else 5) for i, s in enumerate(SPLITS)]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def name(i):
    return f"COCO_val2014_{i:012d}.jpg"


def test_karpathy_splits(karpathy_json):
    assert read_karpathy_captions(karpathy_json, "test") == ([name(0), name(5)], [raws(0), raws(5)])
    assert read_karpathy_captions(karpathy_json, "train") == (
        [name(1), name(2), name(4)], [raws(1), raws(2, 6), raws(4)])
    assert read_karpathy_captions(karpathy_json, "val") == ([name(3)], [raws(3)])
    assert read_karpathy_captions(karpathy_json, "dev") == read_karpathy_captions(karpathy_json, "val")


def test_karpathy_unknown_split(karpathy_json):
    with pytest.raises(ValueError, match="unknown Karpathy split 'restval'"):
        read_karpathy_captions(karpathy_json, "restval")


def test_karpathy_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_flickr30k.json"):
        read_karpathy_captions(tmp_path / "dataset_flickr30k.json", "test")


@pytest.mark.parametrize("content, message", [
    ('{"images": [', "not valid JSON"),
    ('[1, 2]', "'images' list"),
    ('{"dataset": "flickr30k"}', "'images' list"),
    ('{"images": [{"filename": "1.jpg", "split": "test"}]}', r"images\[0\] lacks"),
    ('{"images": [{"filename": "1.jpg", "split": "test", "sentences": [{"tokens": []}]}]}', r"images\[0\] lacks"),
    ('{"images": [{"filename": 7, "split": "test", "sentences": []}]}', r"images\[0\] has a non-string"),
])
def test_karpathy_malformed_named(tmp_path, content, message):
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as e:
        read_karpathy_captions(path, "test")
    assert str(path) in str(e.value)
