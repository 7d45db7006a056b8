"""End to end: `alignbench train task=vqa …` trains, tests and writes a run record."""

import json
import os
import subprocess
import sys

import pytest

from alignbench.cli import main
from alignbench.run.record import read_record

from conftest import USER_CONF, USER_PKG

TINY = ["task=vqa", "preset=tiny"]


def train(tmp_path, *overrides, name="run"):
    run_dir = tmp_path / name
    code = main(["train", *TINY, *overrides, f"hydra.run.dir={run_dir}"])
    return code, run_dir


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.parametrize("data", ["synthetic", "easy_vqa"])
def test_tiny_run_writes_complete_record(tmp_path, data):
    code, run_dir = train(tmp_path, f"data={data}", "score=ban")
    assert code == 0
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["error"] is None
    assert (record["task"], record["data"], record["score"], record["seed"]) == ("vqa", data, "ban", 0)
    metrics = record["metrics"]
    assert 0 <= metrics["test/vqa_acc"] <= 100
    assert {"test/attn_entropy", "test/attn_entropy_g0", "test/attn_entropy_g1"} <= set(metrics)
    types = {"synthetic": ["attribute", "existence", "counting", "relation"], "easy_vqa": ["yes/no", "color", "shape"]}
    assert {f"test/vqa_acc/{t}" for t in types[data]} <= set(metrics)
    assert record["params"] > record["score_params"] > 0
    assert record["config"]["score"]["glimpses"] == 2  # BAN follows the model's glimpse count
    assert len(record["config_hash"]) == 16 and record["wall_seconds"] > 0
    assert record["history"] and "val/vqa_acc" in record["history"][-1]
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert record["versions"]["torch"]
    # a record can move: no absolute path of this machine in it
    text = (run_dir / "run.json").read_text()
    assert str(tmp_path) not in text and os.environ["ALIGNBENCH_OUTPUT"] not in text


def test_seeded_runs_reproduce(tmp_path):
    a = read_record(train(tmp_path, "data=synthetic", "score=additive", name="a")[1])
    b = read_record(train(tmp_path, "data=synthetic", "score=additive", name="b")[1])
    assert a["metrics"] == b["metrics"] and a["config_hash"] == b["config_hash"]
    c = read_record(train(tmp_path, "data=synthetic", "score=additive", "seed=1", name="c")[1])
    assert c["config_hash"] != a["config_hash"]


def test_question_only_baseline(tmp_path):
    record = read_record(train(tmp_path, "data=synthetic", "model.use_image=false")[1])
    assert record["status"] == "completed"
    assert record["score_params"] == 0 and "test/attn_entropy" not in record["metrics"]
    assert record["score"] == "question_only" and record["baseline"] is True  # a labelled baseline row


def test_user_score_by_target_is_labelled_by_class(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(USER_PKG))
    record = read_record(train(tmp_path, "data=synthetic", "score._target_=my_scores.NegSquaredDistanceScore")[1])
    assert record["status"] == "completed" and record["score"] == "NegSquaredDistanceScore"


def test_user_score_on_searchpath(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(USER_PKG))
    record = read_record(train(tmp_path, "data=synthetic", f"hydra.searchpath=[file://{USER_CONF}]",
                               "score=neg_distance")[1])
    assert record["status"] == "completed" and record["score"] == "neg_distance"


def test_nan_loss_fails_with_record(tmp_path):
    result = cli("train", *TINY, "data=synthetic", "score._target_=my_scores.NaNScore",
                 f"hydra.run.dir={tmp_path / 'nan'}", env={"PYTHONPATH": str(USER_PKG)})
    assert result.returncode != 0
    record = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert record["status"] == "failed" and "non-finite training loss" in record["error"]
    assert "non-finite training loss" in result.stderr


@pytest.mark.parametrize("override,expected", [
    ("score=nope", "unknown score 'nope'; valid choices: activated_general"),
    ("task=nope", "unknown task 'nope'; valid choices: grounding, retrieval, t2i, vqa"),
    ("data=nope", "unknown data 'nope'; valid choices: cub_format, easy_vqa, flickr30k_entities, scan_precomp, synthetic, vqa2"),
])
def test_unknown_choices_exit_2_without_traceback(override, expected):
    result = cli("train", override)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_choice_inside_sweep_exits_2():
    result = cli("train", "-m", "score=dot,nope")
    assert result.returncode == 2 and "unknown score 'nope'" in result.stderr


def test_list_and_help():
    result = cli("list", "scores")
    assert result.returncode == 0 and "scaled_dot" in result.stdout and "ban" in result.stdout
    result = cli("--help")
    assert result.returncode == 0 and "train" in result.stdout and "list" in result.stdout


def test_grouped_sampler_covers_every_question_once_with_exact_length():
    import torch

    from alignbench.data.datasets.vqa import ImageGroupedBatchSampler

    image_index = torch.tensor([3, 0, 0, 1, 3, 3, 2, 1, 0, 2, 2, 2, 4])
    sampler = ImageGroupedBatchSampler(image_index, batch_size=4, seed=0)
    for _ in range(3):  # several epochs, each a new order
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(image_index)))
        # questions of one image are contiguous in the epoch's order
        images = image_index[torch.tensor(flat)].tolist()
        assert sum(1 for a, b in zip(images, images[1:]) if a != b) == len(set(images)) - 1


def test_run_directory_is_named_after_the_score_label(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(USER_PKG))
    monkeypatch.setenv("ALIGNBENCH_OUTPUT", str(tmp_path))
    assert main(["train", *TINY, "data=synthetic", "score._target_=my_scores.NegSquaredDistanceScore"]) == 0
    (record_path,) = tmp_path.glob("vqa/synthetic/NegSquaredDistanceScore/seed0/*/run.json")
    assert read_record(record_path.parent)["score"] == "NegSquaredDistanceScore"


def test_glimpses_of_a_parameter_free_score_differ_and_uniform_is_the_control(tmp_path):
    dot = read_record(train(tmp_path, "data=synthetic", "score=dot", name="dot")[1])["metrics"]
    assert dot["test/attn_entropy_g0"] != dot["test/attn_entropy_g1"]  # one shared projection per glimpse
    uniform = read_record(train(tmp_path, "data=synthetic", "score=uniform", name="uniform")[1])
    assert uniform["metrics"]["test/attn_entropy"] == pytest.approx(100.0, abs=1e-3)
    assert uniform["score_params"] == 0 and uniform["params"] == read_record(tmp_path / "dot")["params"]
