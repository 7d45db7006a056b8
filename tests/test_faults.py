"""Faults: a killed run resumes from its last checkpoint; records are written atomically."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from alignbench.run.record import read_record, write_json_atomic

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
    # the kill lands at the first checkpoint, with most of the epochs still to go
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


SMALL = {
    "vqa": ["data.limit=256", "model.hidden_dim=32", "model.embed_dim=16", "model.channels=[8,16]"],
    "retrieval": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=20", "model.hidden_dim=32",
                  "model.embed_dim=16", "model.channels=[8,16,16]"],
    "t2i": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=40", "model.hidden_dim=32",
            "model.embed_dim=16", "model.g_channels=16", "model.d_channels=8", "model.evaluator_epochs=1"],
    "grounding": ["data.train_scenes=120", "data.val_scenes=20", "data.test_scenes=20", "model.hidden_dim=32",
                  "model.embed_dim=16"],
}


@pytest.mark.parametrize("task", ["vqa", "retrieval", "t2i", "grounding"])
def test_non_finite_loss_fails_with_its_step_and_the_sweep_goes_on(tmp_path, task):
    from conftest import USER_PKG

    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(USER_PKG)}
    # two jobs: the NaN score fails at its first step, then dot runs to the end
    args = [sys.executable, "-m", "alignbench", "train", "-m", f"task={task}", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", *SMALL[task], "score=scaled_dot",
            "score._target_=my_scores.NaNScore,alignbench.scores.DotScore"]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1 and "1 run(s) failed" in result.stderr, result.stderr[-2000:]
    records = {read_record(p.parent)["score"]: read_record(p.parent) for p in tmp_path.rglob("run.json")}
    assert set(records) == {"NaNScore", "DotScore"}
    failed = records["NaNScore"]
    assert failed["status"] == "failed" and "non-finite" in failed["error"]
    assert re.search(r"at step \d+$", failed["error"])  # the step it stopped at (a GAN counts both optimisers)
    assert failed["metrics"] == {}
    assert records["DotScore"]["status"] == "completed"


def _alignbench_processes(marker: str) -> list[str]:
    """Command lines of the processes on this machine that name ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and "alignbench" in cmdline:
                found.append(cmdline)
    return found


def _statuses(out):
    statuses = {}
    for path in sorted(out.rglob("run.json")):
        try:
            statuses[path.parent.relative_to(out / "runs").as_posix()] = json.loads(path.read_text())["status"]
        except (OSError, ValueError):
            pass
    return statuses


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find leftover processes")
def test_sigterm_stops_compare_and_its_workers_and_the_rerun_completes(tmp_path):
    out = tmp_path / "cmp"
    args = [sys.executable, "-m", "alignbench", "compare", "preset=smoke", "tasks=[vqa]", "scores=[dot,ban]",
            "baselines=null", "seeds=2", f"out={out}", "--", "trainer.max_epochs=4"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "running" not in _statuses(out).values():
        time.sleep(0.2)
    assert "running" in _statuses(out).values(), "no run started"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignbench: compare interrupted") and "resume" in lines[0], stderr
    assert not _alignbench_processes(str(out)), "workers left running"
    stopped = _statuses(out)
    assert "interrupted" in stopped.values() and "running" not in stopped.values(), stopped
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _statuses(out) == {f"vqa/{s}/seed{n}": "completed" for s in ("ban", "dot") for n in (0, 1)}
    assert "4 completed run(s)" in (out / "report" / "report.md").read_text()
