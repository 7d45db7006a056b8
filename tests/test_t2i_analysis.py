"""Text-to-image interpretability: hand-made cases for the pure parts, a stub model whose
images depend on one word only, and a real (1-epoch) run with ``alignbench analyze``."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from alignbench.analysis.t2i import analyze_t2i, object_grounding, word_mass, word_region_maps
from alignbench.analysis.t2i_truth import grounding_targets, phrase_object, phrase_words
from alignbench.data.generator.captions import Phrase
from alignbench.data.generator.scenes import COLOUR_NAMES, SHAPES
from alignbench.data.synthetic import boxes_mask
from alignbench.data.datasets.t2i import T2ITensors
from alignbench.data.datasets.text import tokenize
from alignbench.metrics.grounding import deletion_order, keep_masks
from alignbench.models.t2i_evaluators import eval_noise_table


def test_deletion_order_and_keep_masks_skip_padding():
    mass = torch.tensor([[0.2, 0.5, 0.3, 0.0], [0.1, 0.9, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    order = deletion_order(mass, valid=valid)
    assert order[0, :3].tolist() == [1, 2, 0] and order[1, :2].tolist() == [1, 0]
    random = deletion_order(mass, torch.Generator().manual_seed(0), random=True, valid=valid)
    assert sorted(random[0, :3].tolist()) == [0, 1, 2] and random[0, 3] == 3
    assert sorted(random[1, 2:].tolist()) == [2, 3]
    counts = valid.sum(1)
    # half of 3 words rounds to 2 (banker's rounding of 1.5); half of 2 words is 1
    assert (keep_masks(order, 0.5, counts) & valid).tolist() == [[True, False, False, False],
                                                                 [True, False, False, False]]
    assert (keep_masks(order, 0.9, counts) & valid).sum(1).tolist() == [1, 1]  # one word always stays
    assert keep_masks(order, 0.0, counts).all()
    assert torch.equal(keep_masks(order, 0.5, torch.tensor([4, 4])), keep_masks(order, 0.5))  # counts = R: as before


def test_word_mass_and_where_words_are_drawn():
    # stage A: 2x2 regions over 3 words (the third padded); stage B: 4x4 regions, all on word 0
    a = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])[None, None]
    b = torch.zeros(1, 1, 16, 3)
    b[..., 0] = 1.0
    mass = word_mass([a, b], "row")
    assert mass[0].tolist() == pytest.approx([(0.5 + 1.0) / 2, 0.5 / 2, 0.0])
    where = word_region_maps([a, b])  # onto the coarsest (2x2) grid
    assert where.shape == (1, 3, 4)
    assert where[0, 0].tolist() == pytest.approx([(0.25 + 0.25) / 2, (0.5 + 0.25) / 2, 0.25 / 2, (0.25 + 0.25) / 2])
    assert where[0, 1].tolist() == pytest.approx([0.25 / 2, 0.0, 0.5 / 2, 0.25 / 2])  # stage B: nothing on word 1
    assert where[0, 2].tolist() == [0.0, 0.0, 0.0, 0.0]  # a padded word
    fine = torch.zeros(1, 1, 16, 1)
    fine[0, 0, 5, 0] = 1.0  # the 4x4 stage's cell (row 1, col 1) lies in the 2x2 grid's cell 0
    coarse = torch.full((1, 1, 4, 1), 1.0)
    assert word_region_maps([fine, coarse])[0, 0].tolist() == pytest.approx([(1 + 0.25) / 2, 0.125, 0.125, 0.125])


def test_phrase_words_find_the_colour_and_shape_tokens():
    text = "there is a big red disc on the left and a small blue box on a dark background"
    tokens = tokenize(text)
    found = phrase_words(text)
    assert [(tokens[c], tokens[s]) for c, s, _ in found] == [("red", "disc"), ("blue", "box")]
    assert found[0][2].desc == ("large", "red", "circle") and found[0][2].loc == "left"
    rel = "a picture of a purple pyramid left of the cyan square"
    assert [(tokenize(rel)[c], tokenize(rel)[s]) for c, s, _ in phrase_words(rel)] == [("purple", "pyramid"),
                                                                                   ("cyan", "square")]
    counted = "there are three objects, including a green circle and a small triangle"  # no colour: left out
    assert [(tokenize(counted)[c], tokenize(counted)[s]) for c, s, _ in phrase_words(counted)] == [("green", "circle")]
    assert phrase_words("a bird with a red wing") == []  # outside the grammar


def test_phrase_object_tells_twins_apart_by_size_and_location():
    red, circle = COLOUR_NAMES.index("red"), SHAPES.index("circle")
    boxes = torch.tensor([[2.0, 2.0, 7.0, 7.0], [20.0, 20.0, 29.0, 29.0], [10.0, 2.0, 19.0, 11.0]])  # 5, 9, 9 px
    colour, shape = [red, red, SHAPES.index("square")], [circle, circle, 0]
    assert phrase_object(Phrase("a", ("small", "red", "circle")), colour, shape, boxes, 32) == 0
    assert phrase_object(Phrase("a", ("large", "red", "circle")), colour, shape, boxes, 32) == 1
    assert phrase_object(Phrase("a", (None, "red", "circle"), "bottom right"), colour, shape, boxes, 32) == 1
    assert phrase_object(Phrase("a", (None, "red", "circle")), colour, shape, boxes, 32) is None  # ambiguous
    assert phrase_object(Phrase("a", (None, "blue", "circle")), colour, shape, boxes, 32) is None  # absent


def test_grounding_targets_place_every_described_object():
    from alignbench.data.synthetic_t2i import SyntheticT2IDataModule

    dm = SyntheticT2IDataModule(train_scenes=20, val_scenes=10, test_scenes=40)
    dm.setup()
    split = dm.splits["test"]
    ids = list(range(len(split.texts)))
    targets = grounding_targets(split, ids)
    assert sum(map(len, targets)) == sum(len(d) for d in split.described)
    for j, objects in zip(ids, targets):
        tokens = tokenize(split.texts[j])
        row = int(split.caption_image[j])
        for (c_pos, s_pos, box), (colour, _, _) in zip(objects, split.described[j]):
            assert tokens[c_pos] == COLOUR_NAMES[colour]
            centres = split.objects["centre"][row][split.objects["colour"][row] == colour]
            assert any(box[int(y), int(x)] for x, y in centres.tolist())  # the box holds that object's centre
    # boxes the data module stores are used as they are
    corner = torch.tensor([0.0, 0.0, 4.0, 4.0]).repeat(*split.objects["colour"].shape, 1)
    split.objects = {**split.objects, "boxes": corner}
    stored = [box for objects in grounding_targets(split, ids[:10]) for _, _, box in objects]
    assert stored and all(int(box.sum()) == 16 and box[:4, :4].all() for box in stored)


def test_object_grounding_on_hand_made_maps():
    box = boxes_mask(torch.tensor([[0.0, 0.0, 16.0, 16.0]]), 32)  # the top-left quarter
    where = torch.zeros(2, 3, 4)
    where[0, 1, 0] = where[0, 2, 0] = 1.0  # both words of example 0's object drawn in its box
    where[1, 0] = torch.tensor([0.0, 0.5, 0.5, 0.0])  # example 1's colour word outside, shape word uniform
    where[1, 1] = 0.25
    got = object_grounding(where, [[(1, 2, box)], [(0, 1, box)]])
    assert got["pointing_acc"].tolist() == [100.0, 0.0]
    assert got["attn_mass_gt"].tolist() == pytest.approx([100.0, 12.5])
    assert got["attn_mass_chance"].tolist() == [25.0, 25.0] and got["pointing_chance"].tolist() == [25.0, 25.0]
    assert object_grounding(where, [[], []]) == {}


class _OneWordGenerator(nn.Module):
    """Attention falls with the word position; the image is bright only while word 0 is attended."""

    normalization = "row"

    def forward(self, sentence, words, mask, noise):
        logits = -torch.arange(words.shape[1], dtype=torch.float32).expand(len(words), 16, -1)
        weights = torch.softmax(logits.masked_fill(~mask[:, None, :], float("-inf")), -1).nan_to_num(0.0)
        image = torch.zeros(len(words), 3, 8, 8) + 0 * words.sum((1, 2))[:, None, None, None]
        image[:, 0] += mask[:, 0, None, None].float()
        image[:, 1] += 0.5
        return image, [weights[:, None]]


class _Matcher(nn.Module):
    def embed_image(self, image):
        return nn.functional.normalize(image[:, :2].mean((2, 3)), dim=-1)

    def embed_caption(self, tokens, mask):
        step = torch.arange(len(tokens), dtype=torch.float32)[:, None] * 0.1
        return nn.functional.normalize(torch.cat([torch.ones(len(tokens), 1), 0.5 + step], 1), dim=-1)


def test_faithfulness_measures_on_a_model_that_reads_one_word():
    n, length = 12, 10
    tokens = torch.randint(2, 9, (n, length))
    split = T2ITensors(tokens, tokens != 0, torch.arange(n), torch.zeros(n, 3, 8, 8, dtype=torch.uint8),
                       [f"caption {i}" for i in range(n)])
    datamodule = SimpleNamespace(splits={"test": split}, eval_captions=lambda s: split.first_caption)
    model = nn.Module()
    model.text, model.generator = nn.Embedding(10, 4), _OneWordGenerator()
    model.hparams, model.evaluators = SimpleNamespace(noise_dim=2), {"matcher": _Matcher()}
    result = analyze_t2i(model, datamodule, examples=n, costly_examples=4, ig_steps=4)
    m, curves = result["metrics"], result["deletion"]
    # captions embed as [1, b_j] (b_j = 0.5 + 0.1 j); images as [1, 0.5] with word 0 attended, else [0, 1]
    b = 0.5 + 0.1 * torch.arange(n, dtype=torch.float64)
    with_word = float((100 * (1 + 0.5 * b) / (1.25 ** 0.5 * (1 + b * b).sqrt())).mean())
    without = float((100 * b / (1 + b * b).sqrt()).mean())
    assert curves["attention"] == pytest.approx([with_word] + [without] * 5, abs=1e-3)  # word 0 goes first
    assert curves["random"][0] == curves["attention"][0] and curves["random"][1] > without + 5  # mostly kept at 10%
    assert m["test/aopc_gain"] > 0.2 * (with_word - without)
    assert m["test/flip_rate"] == 100.0  # without word 0 every image reads as another caption
    assert m["test/tau_loo"] > 0 and "test/tau_ig" not in m  # the words' features do not matter: τ undefined
    assert "test/pointing_acc" not in m and curves["objects"] == 0  # no object truth


@pytest.fixture(scope="module")
def t2i_run(tmp_path_factory):
    from alignbench.cli import main

    run_dir = tmp_path_factory.mktemp("t2i_analysis") / "run"
    assert main(["train", "task=t2i", "preset=tiny", "data=synthetic", "data.limit=64", "model.g_channels=32",
                 "model.evaluator_epochs=1", "analysis.costly_examples=8", f"hydra.run.dir={run_dir}"]) == 0
    return run_dir


def test_t2i_analysis_is_recorded_and_in_range(t2i_run):
    record = json.loads((t2i_run / "run.json").read_text())
    assert record["status"] == "completed", record.get("error")
    m, curves = record["metrics"], record["analysis"]
    for key in ("pointing_acc", "pointing_chance", "attn_mass_gt", "attn_mass_chance", "aopc_gain", "tau_ig",
                "tau_loo", "flip_rate"):
        assert f"test/{key}" in m, key
    for key in ("pointing_acc", "pointing_chance", "attn_mass_gt", "attn_mass_chance", "flip_rate"):
        assert 0 <= m[f"test/{key}"] <= 100, key
    assert 0 < m["test/pointing_chance"] < 50 and 0 < m["test/attn_mass_chance"] < 50
    for res in (8, 16):  # each stage on its own grid: a finer grid has a lower pointing chance
        assert 0 <= m[f"test/pointing_acc_{res}px"] <= 100 and 0 <= m[f"test/attn_mass_gt_{res}px"] <= 100
    assert m["test/pointing_chance_16px"] < m["test/pointing_chance_8px"]
    assert -1 <= m["test/tau_ig"] <= 1 and -1 <= m["test/tau_loo"] <= 1
    assert curves["metric"] == "caption_similarity" and curves["deleted"] == "words"
    assert curves["costly_examples"] == 8 and record["analysis_seconds"] > 0
    assert curves["attention"][0] == curves["random"][0] and -100 <= curves["attention"][0] <= 100
    # every evaluation caption analysed, every object it describes placed
    from alignbench.run.build import build_parts

    datamodule, _ = build_parts(record["config"])
    datamodule.setup("test")
    split, ids = datamodule.splits["test"], datamodule.eval_captions("test")
    assert curves["examples"] == len(ids) and curves["objects"] == sum(len(split.described[j]) for j in ids.tolist())
    with np.load(t2i_run / "attention_examples.npz") as npz:  # written after testing
        assert npz["attention"].shape == (8, 8, 8) and npz["truth"].shape == (8, 32, 32) and npz["truth"].any()
        assert np.allclose(npz["attention"].sum((1, 2)), 1.0, atol=1e-4)


def test_hiding_every_word_changes_the_generation(t2i_run):
    from alignbench.run.build import build_parts
    from alignbench.models.generation import masked_mean

    record = json.loads((t2i_run / "run.json").read_text())
    datamodule, model = build_parts(record["config"])
    model.load_state_dict(torch.load(t2i_run / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"])
    model.eval()
    datamodule.setup("test")
    batch = datamodule.splits["test"].batch(datamodule.eval_captions("test")[:16].tolist())
    mask = batch["caption_mask"]
    with torch.no_grad():
        words = model.text(batch["caption"])
        noise = eval_noise_table(len(datamodule.splits["test"].captions), model.hparams.noise_dim, "test")[:16]
        full, maps = model.generator(masked_mean(words, mask), words, mask, noise)
        none, maps_none = model.generator(masked_mean(words, mask), words, torch.zeros_like(mask), noise)
        again, _ = model.generator(masked_mean(words, mask), words, mask, noise)
    assert torch.equal(full, again)  # fixed noise: the same image every time
    assert (full - none).abs().amax() > 1e-3
    assert all(float(m.abs().sum()) == 0 for m in maps_none)  # a fully hidden caption: no attention at all


def test_analyze_command_on_a_t2i_run(t2i_run, capsys):
    from alignbench.cli import main

    before = json.loads((t2i_run / "run.json").read_text())
    (t2i_run / "attention_examples.npz").unlink()
    assert main(["analyze", str(t2i_run), "--examples", "16", "--costly-examples", "4"]) == 0
    after = json.loads((t2i_run / "run.json").read_text())
    assert after["analysis"]["examples"] == 16 and after["analysis"]["costly_examples"] == 4
    assert after["metrics"]["test/r_precision"] == before["metrics"]["test/r_precision"]  # training results untouched
    assert "test/pointing_acc" in after["metrics"] and (t2i_run / "attention_examples.npz").is_file()
    assert "pointing_acc" in capsys.readouterr().out


def test_t2i_analysis_without_ground_truth_on_the_cub_layout(tmp_path):
    from test_t2i import write_attngan_root

    from alignbench.cli import main

    write_attngan_root(tmp_path / "birds", n_train=16, n_test=6, size=(24, 24))
    run_dir = tmp_path / "run"
    assert main(["train", "task=t2i", "preset=tiny", "data=cub_format", f"data.data_path={tmp_path / 'birds'}",
                 "data.image_size=16", "data.crop_to_bbox=false", "data.val_fraction=0.25", "data.batch_size=8",
                 "model.g_channels=32", "model.evaluator_epochs=1", f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    m, curves = record["metrics"], record["analysis"]
    assert "test/aopc_gain" in m and 0 <= m["test/flip_rate"] <= 100
    assert "test/pointing_acc" not in m and "test/attn_mass_gt" not in m and curves["objects"] == 0
    assert curves["examples"] == 6 and curves["costly_examples"] == 6
    with np.load(run_dir / "attention_examples.npz") as npz:  # every word's map on average, no truth to outline
        assert "truth" not in npz.files and npz["attention"].shape == (6, 8, 8)


def test_report_shows_t2i_interpretability(tmp_path):
    from alignbench.run.record import write_json_atomic
    from alignbench.results import write_report

    for score, gain in (("dot", 2.0), ("ban", 5.0)):
        metrics = {"test/r_precision": 10.0, "test/pointing_acc": 30.0, "test/pointing_chance": 10.0,
                   "test/attn_mass_gt": 12.0, "test/attn_mass_chance": 5.0, "test/aopc_gain": gain,
                   "test/flip_rate": 4.0, "test/tau_ig": 0.1, "test/tau_loo": 0.2}
        record = {"task": "t2i", "data": "synthetic", "score": score, "seed": 0, "status": "completed",
                  "metrics": metrics, "history": [], "params": 10, "score_params": 1, "train_seconds": 1.0,
                  "config_hash": score, "analysis_seconds": 2.0,
                  "analysis": {"fractions": [0.0, 0.1, 0.25, 0.5, 0.75, 0.9], "attention": [60, 50, 40, 30, 20, 10],
                               "random": [60, 58, 55, 50, 45, 40], "metric": "caption_similarity", "deleted": "words"}}
        write_json_atomic(tmp_path / "runs" / score / "run.json", record)
    report = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    section = report[report.index("## Interpretability"):]
    assert "### Text-to-image: synthetic" in section and "hiding words from the attention" in section
    # one seed: no interval, so no best is marked
    assert "| ban | 1 | 30.00 | 10.00 | 12.00 | 5.00 | 5.00 | 4.00 | 0.10 | 0.20 | 2 |" in section
    assert "Most faithful by AOPC gain: ban; least: dot." in section
    assert (tmp_path / "report" / "figures" / "t2i_synthetic_deletion.png").is_file()


def test_report_shows_t2i_pointing_per_stage(tmp_path):
    from alignbench.run.record import write_json_atomic
    from alignbench.results import write_report

    metrics = {"test/r_precision": 10.0, "test/pointing_acc": 30.0, "test/pointing_chance": 10.0,
               "test/pointing_acc_16px": 21.5, "test/pointing_chance_16px": 5.7,
               "test/pointing_acc_8px": 0.8, "test/pointing_chance_8px": 6.3}
    record = {"task": "t2i", "data": "synthetic", "score": "dot", "seed": 0, "status": "completed",
              "metrics": metrics, "history": [], "params": 10, "score_params": 1, "train_seconds": 1.0,
              "config_hash": "a", "analysis_seconds": 2.0}
    write_json_atomic(tmp_path / "runs" / "dot" / "run.json", record)
    report = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    section = report[report.index("## Interpretability"):]
    # the stages in resolution order, each with its own chance, after the pooled pointing columns
    assert "| score | seeds | pointing acc | pointing chance | pointing 8px | chance 8px | pointing 16px | chance 16px |" \
        in section
    assert "| dot | 1 | 30.00 | 10.00 | 0.80 | 6.30 | 21.50 | 5.70 |" in section


def test_stage_word_maps_normalise_each_word_over_its_stage():
    from alignbench.analysis.t2i import stage_word_maps

    fine = torch.zeros(1, 2, 16, 3)  # [B, heads, 4x4 regions, words]
    fine[0, :, 5, 0] = 1.0  # word 0 drawn in region 5 only, by both heads
    fine[0, 0, :, 1] = 0.5  # word 1: uniform in head 0, absent in head 1
    (per_word,) = stage_word_maps([fine])
    assert per_word.shape == (1, 3, 16)
    assert per_word[0, 0].argmax() == 5 and float(per_word[0, 0, 5]) == pytest.approx(1.0)
    assert per_word[0, 1].tolist() == pytest.approx([1 / 16] * 16)
    assert per_word[0, 2].abs().sum() == 0  # a word no region attends to: zero row
