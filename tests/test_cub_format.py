"""AttnGAN text-to-image reader on a tiny fixture in the official CUB-200-2011 layout.

Fixture: 2 classes, 3 JPEG images of 40x30 (W x H), each a flat background with the bird's
bounding box painted red; train = [K0, K1] (not sorted), test = [K2]; 10 captions per image
with blank lines mixed in.
"""

import pickle
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from alignbench.data.readers.cub import (
    T2I_SPLITS,
    T2ISplit,
    bbox_crop_box,
    read_bboxes,
    read_t2i_split,
)

K0 = "002.Laysan_Albatross/Laysan_Albatross_0002_1027"
K1 = "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18"
K2 = "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34"
SPLITS = {"train": [K0, K1], "test": [K2]}
W, H = 40, 30
# (x, y, w, h); crop boxes by AttnGAN's rule: K0 (7, 3, 25, 21) 18x18, K1 clipped to
# (28, 18, 40, 30) 12x12, K2 clipped to (0, 0, 29, 27).
BBOXES = {K0: (10, 8, 12, 8), K1: (30, 20, 10, 10), K2: (4, 4, 20, 16)}
BACKGROUND = {K0: (40, 60, 200), K1: (40, 200, 60), K2: (200, 200, 40)}
RED = (220, 30, 30)


def captions_of(key, n=10):
    return [f"a bird {key.split('_')[-1]} number {j} ." for j in range(n)]


def write_image(path, key, size=(W, H), mode="RGB"):
    img = Image.new("RGB", size, BACKGROUND[key])
    x, y, w, h = BBOXES[key]
    img.paste(RED, (x, y, x + w, y + h))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path, quality=95)


def write_birds(tmp_path):
    """``<tmp>/birds`` in AttnGAN's layout: split pickles, text/, CUB_200_2011/ with bbox files."""
    root = tmp_path / "birds"
    for split, keys in SPLITS.items():
        (root / split).mkdir(parents=True)
        with open(root / split / "filenames.pickle", "wb") as f:
            pickle.dump(list(keys), f, protocol=2)
    for key in BBOXES:
        caps = captions_of(key)
        lines = caps[:3] + [""] + caps[3:7] + ["   "] + caps[7:] + ["", ""]
        text_path = root / "text" / f"{key}.txt"
        text_path.parent.mkdir(parents=True, exist_ok=True)
        text_path.write_text("\n".join(lines), encoding="utf-8")
        write_image(root / "CUB_200_2011" / "images" / f"{key}.jpg", key)
    ids = {K1: 1, K2: 2, K0: 3}  # CUB ids follow the class folders
    cub = root / "CUB_200_2011"
    (cub / "images.txt").write_text("".join(f"{i} {k}.jpg\n" for k, i in ids.items()))
    boxes = "".join(f"{ids[k]} {' '.join(f'{v:.1f}' for v in BBOXES[k])}\n" for k in (K0, K2, K1))
    (cub / "bounding_boxes.txt").write_text(boxes)
    return root


def decoded(root, key, ext=".jpg", folder="CUB_200_2011/images"):
    """The fixture image as the reader should return it: uint8 [3, H, W]."""
    with Image.open(root / folder / f"{key}{ext}") as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


@pytest.fixture
def birds(tmp_path):
    return write_birds(tmp_path)


def test_reads_train_split(birds):
    s = read_t2i_split(birds, "train")
    assert isinstance(s, T2ISplit) and s.root == birds
    assert s.keys == [K0, K1]  # pickle order, not sorted
    assert s.captions == [captions_of(K0), captions_of(K1)]  # blank lines skipped, order kept
    assert s.images.shape == (2, 3, H, W) and s.images.dtype == np.uint8
    for i, key in enumerate(s.keys):
        np.testing.assert_array_equal(s.images[i], decoded(birds, key))
    assert T2I_SPLITS == ("train", "test")


def test_test_split_python2_pickle(birds):
    # A Python 2 pickle: protocol 2 with the key as a py2 ``str`` (BINSTRING opcode).
    raw = K2.encode("ascii")
    py2 = b"\x80\x02]q\x00T" + len(raw).to_bytes(4, "little") + raw + b"q\x01a."
    (birds / "test" / "filenames.pickle").write_bytes(py2)
    s = read_t2i_split(birds, "test")
    assert s.keys == [K2] and s.captions == [captions_of(K2)]
    assert s.images.shape == (1, 3, H, W)


def test_bytes_keys_and_limit(birds):
    with open(birds / "train" / "filenames.pickle", "wb") as f:
        pickle.dump([K0.encode(), K1.encode()], f, protocol=3)
    s = read_t2i_split(birds, "train", limit=1)
    assert s.keys == [K0] and len(s.captions) == 1 and s.images.shape == (1, 3, H, W)


def test_extra_captions_keep_first(birds):
    s = read_t2i_split(birds, "train", captions_per_image=5)
    assert s.captions == [captions_of(K0)[:5], captions_of(K1)[:5]]


def test_resize(birds):
    s = read_t2i_split(birds, "train", image_size=16)
    assert s.images.shape == (2, 3, 16, 16) and s.images.dtype == np.uint8
    with Image.open(birds / "CUB_200_2011" / "images" / f"{K1}.jpg") as im:
        expected = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(s.images[1], expected.transpose(2, 0, 1))


def test_coco_style_root_png_and_grayscale(birds):
    """Without CUB_200_2011/images the default images_dir is ``images``; .png is found too."""
    shutil.rmtree(birds / "CUB_200_2011" / "images")
    write_image(birds / "images" / f"{K0}.png", K0, mode="L")
    write_image(birds / "images" / f"{K1}.jpeg", K1)
    s = read_t2i_split(birds, "train", captions_per_image=5)
    assert s.images.shape == (2, 3, H, W)
    np.testing.assert_array_equal(s.images[0], decoded(birds, K0, ".png", "images"))
    assert (s.images[0][0] == s.images[0][1]).all() and (s.images[0][1] == s.images[0][2]).all()
    np.testing.assert_array_equal(s.images[1], decoded(birds, K1, ".jpeg", "images"))


def test_explicit_images_dir(birds, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / f"{K2}.jpg", K2, size=(20, 10))
    assert read_t2i_split(birds, "test", images_dir=elsewhere).images.shape == (1, 3, 10, 20)
    assert read_t2i_split(birds, "test", images_dir="CUB_200_2011/images").images.shape == (1, 3, H, W)


def test_bbox_crop_box_rule():
    assert bbox_crop_box((10, 8, 12, 8), W, H) == (7, 3, 25, 21)
    assert bbox_crop_box((30, 20, 10, 10), W, H) == (28, 18, 40, 30)  # clipped right / bottom
    assert bbox_crop_box((3, 3, 5, 7), W, H) == (0, 1, 10, 11)  # r = int(5.25), centre (5, 6)


def test_read_bboxes_joins_on_id_and_truncates(birds):
    assert read_bboxes(birds) == BBOXES
    (birds / "CUB_200_2011" / "bounding_boxes.txt").write_text("1 1.9 2.5 3.0 4.99\n2 0 0 1 1\n3 0 0 1 1\n")
    assert read_bboxes(birds)[K1] == (1, 2, 3, 4)


def test_crop_contains_box(birds):
    s = read_t2i_split(birds, "train", crop_to_bbox=True, limit=1)
    assert s.images.shape == (1, 3, 18, 18)  # side 2 * int(12 * 0.75)
    img = s.images[0].astype(int)
    np.testing.assert_array_equal(s.images[0], decoded(birds, K0)[:, 3:21, 7:25])
    # the red box (x 10..21, y 8..15) sits at x 3..14, y 5..12 of the crop
    inside = img[:, 6:12, 4:14].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(inside, RED, atol=12)
    for border in (img[:, :3, :], img[:, 15:, :], img[:, :, :2], img[:, :, 16:]):
        np.testing.assert_allclose(border.reshape(3, -1).mean(axis=1), BACKGROUND[K0], atol=12)


def test_crop_clipped_and_resized(birds):
    s = read_t2i_split(birds, "test", crop_to_bbox=True)
    assert s.images.shape == (1, 3, 27, 29)  # (0, 0, 29, 27) after clipping
    np.testing.assert_array_equal(s.images[0], decoded(birds, K2)[:, :27, :29])
    assert read_t2i_split(birds, "train", crop_to_bbox=True, image_size=8).images.shape == (2, 3, 8, 8)


def test_crop_mixed_sizes_named(birds):
    with pytest.raises(ValueError, match=r"Black_Footed_Albatross_0046_18\.jpg: images of mixed sizes: 12x12"):
        read_t2i_split(birds, "train", crop_to_bbox=True)


def test_unknown_split(birds):
    with pytest.raises(ValueError, match=r"unknown AttnGAN split 'val'.*\('train', 'test'\)"):
        read_t2i_split(birds, "val")


def test_missing_filenames_pickle(birds):
    (birds / "test" / "filenames.pickle").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(birds / "test" / "filenames.pickle"))):
        read_t2i_split(birds, "test")


def test_empty_split(birds):
    with open(birds / "test" / "filenames.pickle", "wb") as f:
        pickle.dump([], f, protocol=2)
    with pytest.raises(ValueError, match=r"test.filenames\.pickle: split is empty"):
        read_t2i_split(birds, "test")


@pytest.mark.parametrize("content", [{"a": 1}, ["ok/key", 3]])
def test_malformed_pickle_named(birds, content):
    with open(birds / "train" / "filenames.pickle", "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(ValueError, match=r"train.filenames\.pickle: (expected a pickled list|entry 1)"):
        read_t2i_split(birds, "train")


@pytest.mark.parametrize("layout, bad", [
    # AttnGAN's list of str keys as a text pickle (protocol 0), then LF -> CRLF, as a text-mode
    # copy or a Windows checkout does: every key now ends in "\r"
    ("crlf", [0, 1]),
    ("binary", [1]),  # a binary pickle whose second key carries a stray "\r"
])
def test_keys_with_control_characters_are_named(birds, layout, bad):
    path = birds / "train" / "filenames.pickle"
    if layout == "crlf":
        path.write_bytes(pickle.dumps([K0, K1], protocol=0).replace(b"\n", b"\r\n"))
    else:
        with open(path, "wb") as f:
            pickle.dump([K0, K1 + "\r"], f, protocol=2)
    first = [K0, K1][bad[0]] + "\r"
    with pytest.raises(ValueError) as e:
        read_t2i_split(birds, "train")
    assert str(e.value) == (
        f"{path}: {len(bad)} of 2 keys contain control characters (first: entry {bad[0]} {first!r}); the file was "
        "likely converted to CRLF line endings or opened in text mode: use the original binary filenames.pickle")
    assert "\n" not in str(e.value) and "\\r'" in str(e.value)  # one line; the \r shown, not printed


def test_missing_caption_file(birds):
    (birds / "text" / f"{K1}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(birds / "text" / f"{K1}.txt"))):
        read_t2i_split(birds, "train")


def test_too_few_captions(birds):
    (birds / "text" / f"{K0}.txt").write_text("\n".join(captions_of(K0, 9)) + "\n\n\n")
    with pytest.raises(ValueError, match=r"Laysan_Albatross_0002_1027\.txt: 9 non-empty captions.*=10"):
        read_t2i_split(birds, "train")


def test_non_utf8_captions(birds):
    (birds / "text" / f"{K2}.txt").write_bytes(b"a \xff bird\n" * 10)
    with pytest.raises(ValueError, match=r"Black_Footed_Albatross_0009_34\.txt: not valid UTF-8"):
        read_t2i_split(birds, "test")


def test_missing_image(birds):
    (birds / "CUB_200_2011" / "images" / f"{K1}.jpg").unlink()
    path = birds / "CUB_200_2011" / "images" / f"{K1}.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(f"image not found: {path}")):
        read_t2i_split(birds, "train")


def test_mixed_sizes(birds):
    write_image(birds / "CUB_200_2011" / "images" / f"{K1}.jpg", K1, size=(30, 40))
    with pytest.raises(ValueError, match=r"0046_18\.jpg: images of mixed sizes: 30x40 \(WxH\) here, 40x30 for .*0002_1027"):
        read_t2i_split(birds, "train")
    assert read_t2i_split(birds, "train", image_size=12).images.shape == (2, 3, 12, 12)


@pytest.mark.parametrize("name", ["images.txt", "bounding_boxes.txt"])
def test_missing_bbox_files_with_crop(birds, name):
    (birds / "CUB_200_2011" / name).unlink()
    assert read_t2i_split(birds, "test").images.shape == (1, 3, H, W)  # not needed without crop
    with pytest.raises(FileNotFoundError, match=re.escape(str(birds / "CUB_200_2011" / name))):
        read_t2i_split(birds, "test", crop_to_bbox=True)


def test_bbox_missing_for_key(birds):
    (birds / "CUB_200_2011" / "images.txt").write_text(f"1 {K1}.jpg\n")
    with pytest.raises(ValueError, match=r"images\.txt: no entry for image key '001\.Black_footed_Albatross/Black"):
        read_t2i_split(birds, "test", crop_to_bbox=True)
    (birds / "CUB_200_2011" / "images.txt").write_text(f"1 {K1}.jpg\n9 {K2}.jpg\n")
    with pytest.raises(ValueError, match=r"bounding_boxes\.txt: no bounding box for image id 9"):
        read_t2i_split(birds, "test", crop_to_bbox=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"captions_per_image": 0}, "captions_per_image"), ({"image_size": 0}, "image_size"), ({"limit": 0}, "limit")],
)
def test_bad_arguments(birds, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_t2i_split(birds, "train", **kwargs)
