"""Multi-process runs: Lightning DDP with 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import pytest

from alignbench.run.record import read_record

SMALL = {  # the smoke preset's sizes
    "vqa": ["data.limit=256", "data.test_scenes=100", "model.hidden_dim=32", "model.embed_dim=16",
            "model.channels=[8,16]"],
    "retrieval": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=30", "model.hidden_dim=32",
                  "model.embed_dim=16", "model.channels=[8,16,16]"],
    "t2i": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=40", "model.hidden_dim=32",
            "model.embed_dim=16", "model.g_channels=16", "model.d_channels=8", "model.evaluator_epochs=1",
            "model.grid_examples=4"],
    "grounding": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=40", "model.hidden_dim=32",
                  "model.embed_dim=16"],
}


def alignbench(*args, tmp_path):
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("task", ["vqa", "retrieval", "t2i", "grounding"])
def test_ddp_training_completes_with_one_record(tmp_path, task):
    run_dir = tmp_path / "ddp"
    alignbench("train", f"task={task}", "data=synthetic", "score=ban", "trainer=ddp", "trainer.max_epochs=1",
               "trainer.enable_progress_bar=false", *SMALL[task], f"hydra.run.dir={run_dir}", tmp_path=tmp_path)
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["config"]["trainer"]["strategy"] == "ddp"
    assert record["metrics"] and len(record["history"]) == 1
    assert [p.name for p in tmp_path.rglob("run.json")] == ["run.json"]  # rank 0 alone writes


@pytest.mark.parametrize("task, exact", [
    ("vqa", ["test/vqa_acc", "test/vqa_acc/attribute", "test/vqa_acc/counting", "test/vqa_acc/existence",
             "test/vqa_acc/relation"]),
    ("retrieval", ["test/i2t_r1", "test/i2t_r5", "test/i2t_r10", "test/t2i_r1", "test/t2i_r5", "test/t2i_r10",
                   "test/rsum", "test/i2t_medr", "test/t2i_medr"]),
    ("grounding", []),  # weighted means of per-shard recall: equal up to float32 summation order
])
def test_two_processes_report_the_single_process_metrics(tmp_path, task, exact):
    run_dir = tmp_path / "single"
    alignbench("train", f"task={task}", "data=synthetic", "score=scaled_dot", "trainer.max_epochs=1",
               "trainer.enable_progress_bar=false", *SMALL[task], f"hydra.run.dir={run_dir}", tmp_path=tmp_path)
    single = read_record(run_dir)["metrics"]
    out = tmp_path / "ddp.json"
    alignbench("evaluate", str(run_dir), "trainer.strategy=ddp", "trainer.devices=2", "--out", str(out),
               tmp_path=tmp_path)
    multi = json.loads(out.read_text())
    assert set(exact) <= set(multi) <= set(single)  # the record also holds the interpretability analysis
    for key in exact:  # counts reduced across processes: exactly the same
        assert multi[key] == single[key], key
    for key in set(multi) - set(exact):  # float32 means: the same up to summation order
        assert multi[key] == pytest.approx(single[key], rel=1e-5, abs=1e-4), key


@pytest.mark.parametrize("task", ["vqa", "retrieval", "t2i"])
def test_bf16_mixed_precision_runs_every_task(tmp_path, task):
    run_dir = tmp_path / "bf16"
    alignbench("train", f"task={task}", "data=synthetic", "score=ban", "trainer.precision=bf16-mixed",
               "trainer.max_epochs=1", "trainer.enable_progress_bar=false", *SMALL[task], f"hydra.run.dir={run_dir}",
               tmp_path=tmp_path)
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert all(v == v and abs(v) != float("inf") for v in record["metrics"].values())  # finite
