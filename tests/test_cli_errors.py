"""Bad command lines: exit code 2, one line naming the value and the valid choices, no
traceback, nothing written; `--debug` shows the traceback."""

import os
import subprocess
import sys

import pytest

CASES = [
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not valid: Trainer expects int or null"),
    (["model.lr=fast"], "model.lr='fast' is not valid: VQAModule expects float"),
    (["score=nope"], "unknown score 'nope'; valid choices: activated_general, additive, ban"),
    (["hydra/launcher=nope"], "Could not find 'hydra/launcher/nope'; valid choices: basic, joblib"),
    (["model.nope=1"], "unknown key 'model.nope' (add a new key with +model.nope=...); valid keys there: _target_"),
    (["data=vqa2", "data.root=/no/such/dir"], "vqa2: data.root '/no/such/dir' is not a directory"),
    (["task=retrieval", "data=scan_precomp", "data.data_path=/no/such/dir"], "/no/such/dir/f30k_precomp is not a directory"),
    (["task=t2i", "data=cub_format", "data.data_path=/no/such/dir"], "/no/such/dir"),
    (["task=t2i", "data=easy_vqa"], "data 'easy_vqa' has no 't2i' view; it supports: vqa"),
    (["task=grounding", "data=flickr30k_entities", "data.root=/no/such/dir"], "/no/such/dir/Sentences is not a directory"),
    (["-m", "score=dot,cosine", "model.hidden_dim=x,2"], "model.hidden_dim='x' is not valid: VQAModule expects int"),
    # the analysis runs after training: its settings are checked before, against the task's analysis
    (["task=retrieval", "analysis.examples=many"], "analysis.examples='many' is not valid: analyze_retrieval expects int"),
    (["+analysis.batch=8", "task=t2i"], "analysis.batch is not an option of analyze_t2i"),
]


def run(args, tmp_path):
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path / "out")}
    return subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_train_input_exits_2_with_one_line(tmp_path, args, message):
    result = run(["train", "preset=tiny", *args], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignbench: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # no run folder, no record


def test_debug_shows_the_traceback(tmp_path):
    result = run(["--debug", "train", "trainer.max_epochs=abc"], tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "max_epochs" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["report", "/no/such/dir", "--out", "x"], "no such results folder: /no/such/dir"),
    (["compare", "--", "trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not valid"),
    (["compare", "preset=nope"], "unknown preset 'nope'; valid choices: converged, default, smoke"),
    (["list", "nope"], "invalid choice: 'nope'"),
])
def test_bad_input_of_other_commands(tmp_path, args, message):
    result = run(args, tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
