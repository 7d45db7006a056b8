"""Faults: a killed run resumes from its last checkpoint; records are written atomically."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from alignbench.record import read_record, write_json_atomic

EPOCHS = 12


def command(*extra):
    return [sys.executable, "-m", "alignbench", "train", "task=vqa", "preset=tiny", f"trainer.max_epochs={EPOCHS}",
            *extra]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    try:  # kill -9 as soon as the first epoch's checkpoint exists
        while not list(tmp_path.rglob("last.ckpt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    (run_dir,) = [p.parent for p in tmp_path.rglob("run.json")]
    killed = read_record(run_dir)
    if killed["status"] == "completed":
        pytest.skip("the run finished before it could be killed")
    assert killed["status"] == "running" and killed["metrics"] == {}  # no completed record before it completes
    done_epochs = len(killed["history"])
    assert done_epochs < EPOCHS

    again = subprocess.run(command(), capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming the unfinished run" in again.stdout + again.stderr
    record = read_record(run_dir)  # the same folder, now complete
    assert record["status"] == "completed" and record["resumed"] == 1
    assert [h["epoch"] for h in record["history"]] == list(range(EPOCHS))  # every epoch once, none extra
    assert record["history"][:done_epochs - 1] == killed["history"][:done_epochs - 1]  # earlier epochs kept
    assert len([p for p in tmp_path.rglob("run.json")]) == 1


def test_atomic_write_keeps_the_previous_file_on_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"status": "completed", "metrics": {"test/vqa_acc": 50.0}})
    before = path.read_bytes()

    def crash(obj, fh, **kwargs):
        fh.write('{"status": "comp')  # half a file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"status": "completed", "metrics": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind
