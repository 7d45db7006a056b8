"""Flickr30k Entities readers and region-level grounding truth for SCAN precomp features, on
tiny fixtures in the official layouts (Annotations/<id>.xml, Sentences/<id>.txt), SCAN's
(test_ids.txt: positions in Karpathy's dataset_flickr30k.json) and Karpathy's JSON.

Fixture: 3 images, R=4 regions with hand-placed boxes, D=6 features, 5 captions each.
"""

import json
import re

import numpy as np
import pytest
import torch

from alignbench.data.readers.flickr30k_entities import (box_iou, caption_region_truth, parse_sentence, read_annotation,
                                                read_scan_positions, read_sentences)
from alignbench.data.scan_precomp import ScanPrecompDataModule
from alignbench.scores import ScaledDotScore

R, D = 4, 6

XML = """<annotation>
\t<filename>{image_id}.jpg</filename>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
{objects}</annotation>
"""
BOX = """\t<object>
{names}\t\t<bndbox>
\t\t\t<xmin>{0}</xmin>
\t\t\t<ymin>{1}</ymin>
\t\t\t<xmax>{2}</xmax>
\t\t\t<ymax>{3}</ymax>
\t\t</bndbox>
\t</object>
"""
FLAGS = """\t<object>
{names}\t\t<nobndbox>{nobox}</nobndbox>
\t\t<scene>{scene}</scene>
\t</object>
"""


def box_object(names, corners):
    return BOX.format(*corners, names="".join(f"\t\t<name>{n}</name>\n" for n in names))


def flag_object(name, nobox, scene):
    return FLAGS.format(names=f"\t\t<name>{name}</name>\n", nobox=nobox, scene=scene)


# image id -> (width, height, XML objects (1-based corners), Sentences lines, SCAN captions, region boxes [R, 4])
IMAGES = {
    "1000092795": (500, 400, [
        box_object(["1"], (1, 1, 201, 201)),               # entity 1: [0, 0, 200, 200] (0-based)
        box_object(["2", "3"], (301, 101, 401, 301)),      # one box named by entities 2 and 3
        box_object(["1"], (251, 251, 301, 301)),           # entity 1's second box
        flag_object("4", 1, 0),                            # not visible
        flag_object("5", 0, 1),                            # the whole scene
    ], [
        "[/EN#1/people A man] with [/EN#2/bodyparts pierced ears] is wearing [/EN#0/notvisual glasses] .",
        "[/EN#2/bodyparts/other Ears] [/EN#3/other earrings] .",  # adjacent phrases, two types
        "[/EN#4/other A hat] is not in view",                     # no final full stop
        "[/EN#5/scene The street] is busy .",
        "[/EN#1/people A man] in [/EN#5/scene the street] .",
    ], [
        "A man with pierced ears is wearing glasses.",
        "Ears earrings.",
        "A hat is not in view",
        "The street is busy.",
        "A man in the street.",
    ], [[0, 0, 200, 200], [300, 100, 400, 300], [250, 250, 300, 300],
        [0, 0, 100, 100]]),                                # IoU 0.25 with entity 1, centre inside it
    "36979": (300, 200, [box_object(["10"], (11, 11, 111, 111))], [
        "[/EN#10/people A group of friends] playing [/EN#0/notvisual each other] .",
        "[/EN#10/people Friends] .",                               # one-word phrase
        "[/EN#10/people Six white males ] playing cards .",        # a lone ']' closes the phrase
        "Nothing is annotated here .",
        "[/EN#10/people A man 's friends] play [/EN#11/other poker] .",  # entity 11 is not in the XML
        "",                                                        # trailing blank line
    ], [
        "A group of friends playing each other.",
        "Friends.",
        "Six white males playing cards.",
        "Nothing is annotated here.",
        "A man's friends play poker.",
    ], [[10, 10, 110, 110], [60, 10, 160, 110], [0, 0, 299, 199],  # IoU 1, 1/3, small
        [10, 10, 110, 60]]),                                        # IoU exactly 0.5: counts
    "65567": (640, 480, [box_object(["20"], (101, 101, 201, 201)), box_object(["21"], (1, 1, 640, 480))], [
        "[/EN#20/animals A dog] runs on [/EN#21/scene/other the grass] .",
        "[/EN#20/animals The dog] is brown .",
        "[/EN#21/other Grass] .",
        "[/EN#0/notvisual Something] happens .",
        "[/EN#20/animals A dog] .",
    ], [
        "A dog runs on the grass.",
        "The dog is brown.",
        "Grass.",
        "Something happens.",
        "A dog.",
    ], [[0, 0, 639, 479], [100, 100, 200, 200], [400, 300, 500, 400], [90, 90, 210, 210]]),
}
ORDER = list(IMAGES)
T, F = True, False
EXPECTED = torch.tensor([
    [T, T, T, F], [F, T, F, F], [F, F, F, F], [F, F, F, F], [T, F, T, F],  # 1000092795
    [T, F, F, T], [T, F, F, T], [T, F, F, T], [F, F, F, F], [T, F, F, T],  # 36979
    [T, T, F, T], [F, T, F, T], [T, F, F, F], [F, F, F, F], [F, T, F, T],  # 65567
])


def write_entities(root, images=IMAGES):
    """``<root>/entities/{Annotations,Sentences}`` in the official layout."""
    entities = root / "entities"
    (entities / "Annotations").mkdir(parents=True, exist_ok=True)
    (entities / "Sentences").mkdir(exist_ok=True)
    for image_id, (width, height, objects, lines, _, _) in images.items():
        xml = XML.format(image_id=image_id, width=width, height=height, objects="".join(objects))
        (entities / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
        (entities / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return entities


def write_fixture(root, ids=ORDER):
    """SCAN precomp splits (features, captions; the same 3 images in every split), the test
    split's Flickr ids (our test_flickr_ids.txt) and region boxes, and the Entities folder.
    Returns (precomp, entities)."""
    folder = root / "f30k_precomp"
    folder.mkdir(exist_ok=True)
    feats = np.random.default_rng(0).standard_normal((len(ORDER), R, D)).astype(np.float32)
    captions = "".join(c + "\n" for image_id in ORDER for c in IMAGES[image_id][4])
    for split in ("train", "dev", "test"):
        np.save(folder / f"{split}_ims.npy", feats)
        (folder / f"{split}_caps.txt").write_text(captions, encoding="utf-8")
    (folder / "test_flickr_ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    np.save(folder / "test_boxes.npy", np.array([IMAGES[i][5] for i in ORDER], dtype=np.float32))
    return folder, write_entities(root)


def module(root, **kw):
    return ScanPrecompDataModule(data_path=str(root), entities_path=str(root / "entities"), **kw)


# --- the readers ------------------------------------------------------------------------------


def test_sentence_with_phrases_types_and_non_visual():
    s = parse_sentence("[/EN#18/people A man] with [/EN#19/bodyparts/other pierced ears] wears "
                       "[/EN#0/notvisual glasses] .")
    assert s.text == "A man with pierced ears wears glasses ."
    assert [(p.text, p.first_word_index, p.entity_id, p.types) for p in s.phrases] == [
        ("A man", 0, "18", ("people",)), ("pierced ears", 3, "19", ("bodyparts", "other")),
        ("glasses", 6, "0", ("notvisual",))]
    assert [p.visual for p in s.phrases] == [True, True, False]


def test_sentence_edge_cases_of_the_official_files():
    adjacent = parse_sentence("play [/EN#137651/other em] [/EN#137647/other poker] .")
    assert adjacent.text == "play em poker ." and [p.first_word_index for p in adjacent.phrases] == [1, 2]
    lone = parse_sentence("[/EN#10/people Six white males ] playing")  # ']' as its own token
    assert lone.text == "Six white males playing" and lone.phrases[0].text == "Six white males"
    assert parse_sentence("[/EN#1/people Friends]").phrases[0].text == "Friends"
    same = parse_sentence("[/EN#5/other cards] around [/EN#5/other a table]")  # one chain, two mentions
    assert [p.entity_id for p in same.phrases] == ["5", "5"]
    plain = parse_sentence("a [sic] word")  # brackets that are not markup are words
    assert plain.text == "a [sic] word" and plain.phrases == ()


@pytest.mark.parametrize("line, message", [
    ("[/EN#1/people A man is", "never closed"),
    ("[/EN#1/people A [/EN#2/other hat] ]", "nested markup"),
    ("[/EN#x/people A man]", "malformed phrase markup"),
    ("[/EN#1/ A man]", "malformed phrase markup"),
    ("[/EN#1/people ] .", "empty phrase"),
])
def test_malformed_sentences_are_named(line, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_sentence(line, "Sentences/42.txt: line 3")
    assert "Sentences/42.txt: line 3" in str(e.value)


def test_sentence_file(tmp_path):
    entities = write_entities(tmp_path)
    sentences = read_sentences(entities / "Sentences" / "36979.txt")
    assert len(sentences) == 5  # the blank line is skipped
    assert sentences[4].text == "A man 's friends play poker ."
    assert [(p.entity_id, p.text) for p in sentences[4].phrases] == [("10", "A man 's friends"), ("11", "poker")]
    bad = entities / "Sentences" / "9.txt"
    bad.write_text("fine .\n[/EN#3/people unclosed\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: line 2: .*never closed"):
        read_sentences(bad)
    with pytest.raises(FileNotFoundError, match="8.txt"):
        read_sentences(entities / "Sentences" / "8.txt")


def test_annotation_file(tmp_path):
    entities = write_entities(tmp_path)
    ann = read_annotation(entities / "Annotations" / "1000092795.xml")
    assert (ann.width, ann.height) == (500, 400)
    assert sorted(ann.boxes) == ["1", "2", "3"]
    np.testing.assert_array_equal(ann.boxes["1"], [[0, 0, 200, 200], [250, 250, 300, 300]])  # 1-based -> 0-based
    np.testing.assert_array_equal(ann.boxes["2"], [[300, 100, 400, 300]])
    np.testing.assert_array_equal(ann.boxes["3"], ann.boxes["2"])  # a box named by two entities
    assert ann.nobox == ("4",) and ann.scene == ("5",)
    assert ann.boxes_of(["0", "4", "5", "99"]).shape == (0, 4)
    assert ann.boxes_of(["1", "3"]).shape == (3, 4)


@pytest.mark.parametrize("objects, message", [
    ("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>", "no <name>"),
    ("<object><name>7</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>",
     "inverted box"),
    ("<object><name>7</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>",
     "non-numeric <xmin>"),
    ("<object><name>7</name></object>", "neither <bndbox> nor"),
    ("<object><name>7</name>", "not well-formed XML"),
])
def test_malformed_annotations_are_named(tmp_path, objects, message):
    path = tmp_path / "5.xml"
    path.write_text(f"<annotation><size><width>9</width><height>9</height></size>{objects}</annotation>")
    with pytest.raises(ValueError, match=message) as e:
        read_annotation(path)
    assert str(path) in str(e.value)


def test_box_iou_by_hand():
    a = np.array([[0, 0, 200, 200], [0, 0, 100, 100], [5, 5, 5, 5]])
    b = np.array([[0, 0, 200, 100], [100, 100, 300, 300]])
    np.testing.assert_allclose(box_iou(a, b), [[0.5, 10000 / 70000], [0.5, 0.0], [0.0, 0.0]])


# --- ground truth in the data module ----------------------------------------------------------


def test_grounding_masks_match_the_hand_computed_truth(tmp_path):
    write_fixture(tmp_path)
    dm = module(tmp_path)
    truth = dm.grounding_masks("test", list(range(15)))
    assert truth.dtype == torch.bool and truth.shape == (15, R)
    assert torch.equal(truth, EXPECTED)
    assert torch.equal(dm.grounding_masks("test", [14, 0]), EXPECTED[[14, 0]])
    limited = module(tmp_path, limit=2)  # the first two images only
    assert torch.equal(limited.grounding_masks("test", list(range(10))), EXPECTED[:10])


def test_without_entities_there_is_no_truth(tmp_path):
    write_fixture(tmp_path)
    assert ScanPrecompDataModule(data_path=str(tmp_path)).grounding_masks("test", [0, 1]) is None


def test_ids_in_the_wrong_order_are_caught_before_training(tmp_path):
    write_fixture(tmp_path, ids=[ORDER[1], ORDER[0], ORDER[2]])
    dm = module(tmp_path)
    with pytest.raises(ValueError, match=r"caption 0 'A man with pierced ears is wearing glasses\.' is sentence 1 "
                                         r"of image 36979 .*test_flickr_ids\.txt.*order of the feature rows"):
        dm.setup()


@pytest.mark.parametrize("missing, message", [("f30k_precomp/test_flickr_ids.txt", "grounding: missing"),
                                              ("f30k_precomp/test_boxes.npy", "entities_path is set but"),
                                              ("entities/Sentences", "entities_path is set but")])
def test_missing_file_is_named_at_construction(tmp_path, missing, message):
    write_fixture(tmp_path)
    path = tmp_path / missing
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=message) as e:
        module(tmp_path)
    assert str(path) in str(e.value)


def test_missing_image_files_and_other_splits_are_named(tmp_path):
    write_fixture(tmp_path)
    (tmp_path / "entities" / "Annotations" / "36979.xml").unlink()
    with pytest.raises(FileNotFoundError, match="36979.xml"):
        module(tmp_path).setup()
    write_fixture(tmp_path)
    dm = module(tmp_path)
    with pytest.raises(FileNotFoundError, match="dev_flickr_ids.txt"):  # val truth is read only when asked for
        dm.grounding_masks("val", [0])


def test_region_boxes_are_checked(tmp_path):
    folder, _ = write_fixture(tmp_path)
    np.save(folder / "test_boxes.npy", np.zeros((3, R + 1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"test_boxes\.npy: region boxes must have shape \(3, 4, 4\)"):
        module(tmp_path).setup()
    np.save(folder / "test_boxes.npy", np.array([IMAGES[i][5] for i in ORDER], dtype=np.float32) / 1000)
    with pytest.raises(ValueError, match="normalised coordinates"):
        module(tmp_path).setup()
    boxes = np.array([IMAGES[i][5] for i in ORDER], dtype=np.float32)
    boxes[1, 2] = [0, 0, 600, 400]  # image 36979 is 300x200
    np.save(folder / "test_boxes.npy", boxes)
    with pytest.raises(ValueError, match=r"outside the 300x200 image of .*36979\.xml"):
        module(tmp_path).setup()


def test_caption_truth_pairs_caption_i_with_sentence_i_mod_5(tmp_path):
    entities = write_entities(tmp_path)
    captions = [c for i in ORDER for c in IMAGES[i][4]]
    boxes = np.array([IMAGES[i][5] for i in ORDER], dtype=np.float64)
    truth = caption_region_truth(entities, ORDER, captions, boxes)
    np.testing.assert_array_equal(truth, EXPECTED.numpy())
    swapped = captions[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]  # right image, wrong sentence
    with pytest.raises(ValueError, match="caption 0 'Ears earrings.' is sentence 1 of image 1000092795"):
        caption_region_truth(entities, ORDER, swapped, boxes)


# --- SCAN's own test_ids.txt: positions in Karpathy's dataset_flickr30k.json -----------------

# A miniature of Karpathy's dataset_flickr30k.json: the images sorted by file name, imgid = the
# position in the list (the real file starts 1000092795.jpg, 10002456.jpg, 1000268201.jpg, ...).
KARPATHY_FILES = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "36979.jpg", "4017105.jpg", "65567.jpg"]
POSITIONS = [0, 3, 5]  # of ORDER, as SCAN's test_ids.txt lists them


def write_karpathy(root, files=KARPATHY_FILES, dataset="flickr30k", imgids=None):
    """``<root>/dataset_flickr30k.json`` in Karpathy's layout (``imgids`` overrides imgid)."""
    images, sentid = [], 0
    for position, filename in enumerate(files):
        stem = filename[: -len(".jpg")]
        raws = IMAGES[stem][4] if stem in IMAGES else [f"A distractor photo {position} , take {k} ." for k in range(5)]
        imgid = position if imgids is None else imgids[position]
        sentences = [{"tokens": r.lower().rstrip(".").split(), "raw": r, "imgid": imgid, "sentid": sentid + k}
                     for k, r in enumerate(raws)]
        images.append({"sentids": [x["sentid"] for x in sentences], "imgid": imgid, "sentences": sentences,
                       "split": "test" if stem in IMAGES else "train", "filename": filename})
        sentid += len(sentences)
    path = root / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": dataset}), encoding="utf-8")
    return path


def write_scan_ids(folder, positions=POSITIONS, split="test"):
    """SCAN's ``{split}_ids.txt``: one Karpathy position a line."""
    (folder / f"{split}_ids.txt").write_text("".join(f"{p}\n" for p in positions), encoding="utf-8")


def scan_release(root, positions=POSITIONS):
    """The fixture as SCAN ships it: its test_ids.txt, not our test_flickr_ids.txt."""
    folder, _ = write_fixture(root)
    (folder / "test_flickr_ids.txt").unlink()
    write_scan_ids(folder, positions)
    return folder


def test_scan_ids_are_mapped_through_karpathy_json(tmp_path):
    scan_release(tmp_path)
    karpathy = str(write_karpathy(tmp_path))
    assert torch.equal(module(tmp_path, karpathy_json=karpathy).grounding_masks("test", list(range(15))), EXPECTED)
    limited = module(tmp_path, karpathy_json=karpathy, limit=2)
    assert torch.equal(limited.grounding_masks("test", list(range(10))), EXPECTED[:10])


def test_scan_ids_one_line_per_caption_are_read_per_row(tmp_path):
    folder = scan_release(tmp_path, [p for p in POSITIONS for _ in range(5)])
    karpathy = str(write_karpathy(tmp_path))
    assert read_scan_positions(folder / "test_ids.txt", 3) == POSITIONS
    assert torch.equal(module(tmp_path, karpathy_json=karpathy).grounding_masks("test", list(range(15))), EXPECTED)


def test_scan_ids_without_karpathy_json_are_explained(tmp_path):
    scan_release(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        module(tmp_path)
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "f30k_precomp" / "test_flickr_ids.txt") in message
    assert "test_ids.txt beside it is SCAN's file, whose lines are image positions in Karpathy's " \
           "dataset_flickr30k.json 'images' list, not Flickr photo ids" in message
    assert "set data.karpathy_json" in message


def test_our_ids_win_over_scan_ids_beside_them(tmp_path):
    """SCAN's release ships test_ids.txt: our file beside it is what is read (no more
    'Sentences/0.txt not found'), with or without karpathy_json."""
    folder, _ = write_fixture(tmp_path)
    write_scan_ids(folder, [7, 1, 2])  # positions that would map to the wrong images
    assert torch.equal(module(tmp_path).grounding_masks("test", list(range(15))), EXPECTED)
    karpathy = str(write_karpathy(tmp_path))
    assert torch.equal(module(tmp_path, karpathy_json=karpathy).grounding_masks("test", list(range(15))), EXPECTED)


def test_scan_ids_in_the_wrong_order_name_both_files(tmp_path):
    scan_release(tmp_path, [3, 0, 5])
    karpathy = write_karpathy(tmp_path)
    dm = module(tmp_path, karpathy_json=str(karpathy))
    with pytest.raises(ValueError, match=rf"caption 0 .* of image 36979 \(row 0 of .*test_ids\.txt \(mapped through "
                                         rf"{re.escape(str(karpathy))}\)\)"):
        dm.setup()


@pytest.mark.parametrize("lines, message", [
    ([0, 3], r"test_ids\.txt: 2 lines for 3 feature rows of test_ims\.npy; SCAN's ids file has one image position "
             r"per feature row"),
    (POSITIONS * 5, r"test_ids\.txt: 15 lines for 3 feature rows"),  # 5 per row, but not 5 equal lines per row
    ([0, "1000092795.jpg", 5], r"test_ids\.txt: line 2 is '1000092795\.jpg', not an image position"),
    ([0, 3, 9], r"test_ids\.txt: row 2 has position 9, outside the 6 images of .*dataset_flickr30k\.json "
                r"\(1 of 3 rows are\)"),
])
def test_scan_ids_are_checked(tmp_path, lines, message):
    scan_release(tmp_path, lines)
    dm = module(tmp_path, karpathy_json=str(write_karpathy(tmp_path)))
    with pytest.raises(ValueError, match=message):
        dm.setup()


@pytest.mark.parametrize("karpathy, message", [
    (dict(dataset="coco"), r"dataset_flickr30k\.json: dataset is 'coco'"),
    (dict(imgids=[0, 1, 2, 7, 4, 5]), r"images\[3\] \(36979\.jpg\) has imgid 7; SCAN's ids are positions"),
])
def test_karpathy_json_is_checked(tmp_path, karpathy, message):
    scan_release(tmp_path)
    dm = module(tmp_path, karpathy_json=str(write_karpathy(tmp_path, **karpathy)))
    with pytest.raises(ValueError, match=message):
        dm.setup()


def test_karpathy_json_files_are_named_at_construction(tmp_path):
    folder = scan_release(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"karpathy_json: .*nowhere\.json not found"):
        module(tmp_path, karpathy_json=str(tmp_path / "nowhere.json"))
    karpathy = str(write_karpathy(tmp_path))
    (folder / "test_ids.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"neither .*test_flickr_ids\.txt .* nor SCAN's .*test_ids\.txt"):
        module(tmp_path, karpathy_json=karpathy)
    with pytest.raises(ValueError, match="karpathy_json=.* is set but entities_path is not"):
        ScanPrecompDataModule(data_path=str(tmp_path), karpathy_json=karpathy)


# --- the analysis end to end ------------------------------------------------------------------


def test_analysis_uses_region_truth_directly(tmp_path):
    """R=4 is a square, so the grid path (pixel masks pooled onto 2x2 cells) would also run:
    the chance rates show that the region truth is the cover as it is."""
    from alignbench.analysis import analyze_retrieval
    from alignbench.metrics.grounding import region_mass
    from alignbench.models.retrieval import RetrievalModule

    write_fixture(tmp_path)
    dm = module(tmp_path)
    dm.setup()
    torch.manual_seed(0)
    model = RetrievalModule(ScaledDotScore, vocab_size=len(dm.vocab),
                            visual="regions", visual_dim=D, hidden_dim=8, embed_dim=4)
    result = analyze_retrieval(model, dm, examples=15, costly_examples=2, ig_steps=2)
    m = result["metrics"]
    about = EXPECTED.any(1)  # 11 captions point at something
    share = float(EXPECTED[about].float().mean(1).mean() * 100)
    assert share == pytest.approx(50.0)
    assert m["test/pointing_chance"] == pytest.approx(share) and m["test/attn_mass_chance"] == pytest.approx(share)
    # the same attention computed here: its argmax and mass on the true regions
    batch = dm.splits["test"].eval_batch([0, 1, 2])
    with torch.no_grad():
        regions, _ = model.encode_images(batch)
        words = model.text(batch["caption"])
        weights = model.matcher.normalize(model.matcher.score(words, regions[batch["caption_image"]]),
                                          batch["caption_mask"], None)
    mass = region_mass(weights, model.matcher.normalization, batch["caption_mask"])[about]
    hits = EXPECTED[about].gather(1, mass.argmax(1, keepdim=True)).float().mean() * 100
    assert m["test/pointing_acc"] == pytest.approx(float(hits))
    assert m["test/attn_mass_gt"] == pytest.approx(float((mass * EXPECTED[about]).sum(1).mean() * 100), abs=1e-4)
    assert result["deletion"]["examples"] == 15


@pytest.mark.parametrize("ids", ["ours", "scan"])
def test_tiny_run_records_entities_grounding(tmp_path, ids):
    from alignbench.cli import main
    from alignbench.run.record import read_record

    extra = []
    if ids == "ours":
        write_fixture(tmp_path)
    else:  # SCAN's test_ids.txt and data.karpathy_json
        scan_release(tmp_path)
        extra = [f"data.karpathy_json={write_karpathy(tmp_path)}"]
    assert main(["train", "task=retrieval", "data=scan_precomp", "preset=tiny", "score=scaled_dot",
                 f"data.data_path={tmp_path}", f"data.entities_path={tmp_path / 'entities'}", "data.batch_size=4",
                 "trainer.max_epochs=1", "analysis.costly_examples=2", f"hydra.run.dir={tmp_path / 'run'}",
                 *extra]) == 0
    record = read_record(tmp_path / "run")
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["test/pointing_chance"] == pytest.approx(50.0)
    assert 0 <= record["metrics"]["test/pointing_acc"] <= 100
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["data"]["entities_path"] == str(
        tmp_path / "entities")


def test_entities_path_does_not_change_the_config_hash():
    from alignbench.run.record import config_hash

    base = {"task": {"name": "retrieval"}, "data": {"name": "scan_precomp", "entities_path": None, "limit": 3}}
    with_entities = {**base, "data": {**base["data"], "entities_path": "/data/flickr30k_entities"}}
    with_karpathy = {**base, "data": {**with_entities["data"], "karpathy_json": "/data/dataset_flickr30k.json"}}
    other = {**base, "data": {**base["data"], "limit": 4}}
    assert config_hash(base) == config_hash(with_entities) == config_hash(with_karpathy) != config_hash(other)


def test_adding_the_grounding_truth_reanalyses_a_trained_run_without_retraining(tmp_path):
    """``data.entities_path`` is read by the analysis only: giving it to a run trained
    without it analyses that run again from its checkpoint (the same model, now with the
    pointing game), where a skip would have kept a record without grounding."""
    from alignbench.cli import main
    from alignbench.run.record import read_record
    from alignbench.run.resume import analysis_current

    write_fixture(tmp_path)
    run = tmp_path / "run"
    base = ["train", "task=retrieval", "data=scan_precomp", "preset=tiny", "score=scaled_dot",
            f"data.data_path={tmp_path}", "data.batch_size=4", "trainer.max_epochs=1",
            "analysis.costly_examples=2", f"hydra.run.dir={run}"]
    assert main(base) == 0
    first = read_record(run)
    assert first["status"] == "completed" and "test/pointing_acc" not in first["metrics"]
    checkpoint = (run / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    wanted = {**first["config"], "data": {**first["config"]["data"], "entities_path": str(tmp_path / "entities")}}
    assert not analysis_current(first, wanted) and analysis_current(first, first["config"])

    assert main([*base, f"data.entities_path={tmp_path / 'entities'}"]) == 0
    second = read_record(run)
    assert (run / "checkpoints" / "best.ckpt").stat().st_mtime_ns == checkpoint  # not retrained
    assert second["history"] == first["history"] and second["started"] == first["started"]
    assert second["metrics"]["test/rsum"] == first["metrics"]["test/rsum"]  # the same trained model
    assert second["metrics"]["test/pointing_chance"] == pytest.approx(50.0)
    assert second["config"]["data"]["entities_path"] == str(tmp_path / "entities")
    assert analysis_current(second, wanted)

    # and without it again: analysed again, and the grounding measures of the earlier analysis go,
    # also from a record made before analysis_metrics named them (recognised by their names)
    from alignbench.run.record import write_json_atomic

    write_json_atomic(run / "run.json", {k: v for k, v in second.items() if k != "analysis_metrics"})
    assert main(base) == 0
    third = read_record(run)
    assert (run / "checkpoints" / "best.ckpt").stat().st_mtime_ns == checkpoint
    assert "test/pointing_acc" not in third["metrics"] and third["config"]["data"].get("entities_path") is None
    assert set(third["analysis_metrics"]) <= set(third["metrics"]) and "test/tau_ig" in third["analysis_metrics"]
    assert third["metrics"]["test/rsum"] == first["metrics"]["test/rsum"]
