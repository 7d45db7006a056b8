"""`alignbench compare` and sweeps end to end: real tiny runs, resume, the notebook."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignbench.cli import main
from alignbench.compare import compose_experiment, plan
from alignbench.run.record import read_record, write_json_atomic

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
TINY = ["preset=smoke", "tasks=[vqa]", "scores=[dot,ban]", "jobs=2"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real tiny comparison: 2 scores × 2 seeds of VQA with the smoke preset."""
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", *TINY, "seeds=2", f"out={out}", "--", "trainer.log_every_n_steps=7"]) == 0
    return out


def test_compare_runs_every_job_and_writes_the_report(sweep, capsys):
    records = sorted((sweep / "runs").rglob("run.json"))
    assert [r.relative_to(sweep / "runs").parts[:3] for r in records] == [
        ("vqa", "ban", "seed0"), ("vqa", "ban", "seed1"), ("vqa", "dot", "seed0"), ("vqa", "dot", "seed1"),
        ("vqa", "question_only", "seed0"), ("vqa", "question_only", "seed1")]
    assert all(read_record(r.parent)["status"] == "completed" for r in records)
    assert all(read_record(r.parent)["config"]["trainer"]["log_every_n_steps"] == 7 for r in records)  # after --
    report = (sweep / "report" / "report.md").read_text()
    assert "6 completed run(s)" in report and "| ban | 2 |" in report and "| dot | 2 |" in report
    assert "| question_only (baseline) | 2 |" in report
    assert (sweep / "report" / "figures" / "vqa_synthetic_attention.png").is_file()  # heatmaps of both scores
    # the statistics over seeds, and where every record comes from
    summary = (sweep / "report" / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"ci_low", "ci_high", "p_better_than_ref"} <= set(summary)
    assert "accuracy 95% CI" in report
    assert all(read_record(r.parent)["code_version"].startswith("0.") for r in records)


def test_compare_resumes_and_reruns_only_what_is_missing(sweep, capsys):
    failed = sweep / "runs" / "vqa" / "dot" / "seed1"
    record = read_record(failed)
    write_json_atomic(failed / "run.json", {**record, "status": "failed", "error": "killed"})
    before = {p: p.stat().st_mtime_ns for p in (sweep / "runs").rglob("run.json") if p.parent != failed}
    capsys.readouterr()
    assert main(["compare", *TINY, "seeds=2", f"out={sweep}", "--", "trainer.log_every_n_steps=7"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("[skip]") == 5 and "[1/1] vqa dot seed1: completed" in printed
    assert {p: p.stat().st_mtime_ns for p in before} == before  # completed runs untouched
    assert read_record(failed)["status"] == "completed"
    assert read_record(failed)["metrics"] == record["metrics"]  # same seed, same config: same result
    assert sorted(p.name for p in (failed / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_notebook_executes_on_the_sweep(sweep):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["ALIGNBENCH_RESULTS"] = str(sweep / "runs")
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        del os.environ["ALIGNBENCH_RESULTS"]
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "6 completed runs, 0 skipped" in outputs
    assert any("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))


def test_plan_covers_tasks_scores_seeds():
    cfg = compose_experiment(["seeds=3", "first_seed=5"])
    jobs = plan(cfg)
    scores = list(cfg.scores)
    assert {"uniform", "coattention", "coattention_maxpool"} <= set(scores)  # the control in every comparison
    assert len(jobs) == 4 * len(scores) * 3 + 3 and {j.seed for j in jobs} == {5, 6, 7}
    assert jobs[0].overrides[:4] == ["task=vqa", "preset=compare/default/vqa", "score=dot", "seed=5"]
    baseline = [j for j in jobs if j.score == "question_only"]  # VQA's question-only model, 3 seeds
    assert len(baseline) == 3 and all(j.task == "vqa" and "model.use_image=false" in j.overrides for j in baseline)
    assert len({j.run_dir for j in jobs}) == len(jobs)  # no two jobs share a folder
    assert not [j for j in plan(compose_experiment(["baselines=null"])) if j.score == "question_only"]


def test_a_compare_job_is_one_train_command():
    """`alignbench train preset=compare/<preset>/<task> score=... seed=...` composes exactly the
    config a comparison job runs (the same config hash), so any job can be reproduced alone."""
    from omegaconf import OmegaConf

    from alignbench.run.preflight import compose_run
    from alignbench.run.record import config_hash

    for job in plan(compose_experiment(["preset=smoke", "tasks=[vqa,t2i]", "scores=[ban]", "baselines=null"])):
        alone = compose_run([f"preset=compare/smoke/{job.task}", "score=ban", f"seed={job.seed}"])
        assert config_hash(OmegaConf.to_container(alone, resolve=True)) == job.config_hash, job.label
        assert alone.task.name == job.task and alone.trainer.max_epochs == 1


@pytest.mark.parametrize("override, message", [
    ("preset=nope", "unknown preset 'nope'; valid choices: converged, default, smoke"),
    ("scores=[dot,nope]", "unknown score 'nope'; valid choices:"),
    ("tasks=[vqa,nope]", "unknown task 'nope'; valid choices: grounding, retrieval, t2i, vqa"),
    ("colour=blue", "cannot use 'colour=blue'"),
    ("seeds=0", "seeds must be >= 1"),
])
def test_compare_bad_input_exits_2_and_runs_nothing(tmp_path, capsys, override, message):
    assert main(["compare", override, f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_train_sweep_skips_completed_and_continues_past_failure(tmp_path):
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path)}
    args = [sys.executable, "-m", "alignbench", "train", "-m", "task=vqa", "preset=tiny", "score=dot,cosine",
            "trainer.enable_progress_bar=false"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted(tmp_path.rglob("run.json"))
    assert len(records) == 2
    again = subprocess.run(args + ["score=dot,cosine,scaled_dot"], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("skipped: the same config already completed") == 2
    assert len(sorted(tmp_path.rglob("run.json"))) == 3  # only scaled_dot ran
    # a failing job leaves a failed record, the sweep goes on, the exit code says so
    from conftest import USER_PKG

    bad = subprocess.run(args[:-2] + ["score=dot", "score._target_=my_scores.NaNScore,alignbench.scores.DotScore",
                                      "trainer.enable_progress_bar=false"],
                         capture_output=True, text=True, env={**env, "PYTHONPATH": str(USER_PKG)}, timeout=600)
    assert bad.returncode == 1 and "1 run(s) failed" in bad.stderr  # NaN logits: a failed record
    assert (bad.stdout + bad.stderr).count("skipped: the same config already completed") == 1  # DotScore is score=dot
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.rglob("run.json"))
    assert statuses == ["completed", "completed", "completed", "failed"]


def test_compare_runs_a_users_score_from_their_config_folder_and_by_class(tmp_path, capsys, monkeypatch):
    """The README's "add your own score" walk-through: a YAML on hydra.searchpath and a class path."""
    from conftest import USER_CONF, USER_PKG

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(USER_PKG), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(USER_PKG))
    out = tmp_path / "cmp"
    code = main(["compare", "preset=smoke", "tasks=[vqa]", "scores=[dot,neg_distance,my_scores.NegSquaredDistanceScore]",
                 f"hydra.searchpath=[file://{USER_CONF}]", f"out={out}"])
    assert code == 0, capsys.readouterr().err
    for folder in ("dot", "neg_distance", "NegSquaredDistanceScore"):
        record = read_record(out / "runs" / "vqa" / folder / "seed0")
        assert record["status"] == "completed" and record["score"] == folder
    assert read_record(out / "runs" / "vqa" / "neg_distance" / "seed0")["config"]["score"]["_target_"] == \
        "my_scores.NegSquaredDistanceScore"
    report = (out / "report" / "report.md").read_text()
    assert "| neg_distance | 1 |" in report and "| NegSquaredDistanceScore | 1 |" in report


def test_all_scores_include_the_users_and_unknown_ones_name_the_way(tmp_path, capsys):
    from conftest import USER_CONF

    cfg = compose_experiment(["scores=[all]", "tasks=[vqa]"])
    cfg.train = [f"hydra.searchpath=[file://{USER_CONF}]"]
    assert "neg_distance" in {j.score for j in plan(cfg)}
    assert main(["compare", "scores=[dot,neg_distance]", f"out={tmp_path / 'out'}"]) == 2  # no search path given
    assert "hydra.searchpath" in capsys.readouterr().err
    assert main(["compare", "scores=[nowhere.NoScore]", f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'nowhere.NoScore'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_rerunning_a_finished_sweep_in_its_own_folder_trains_nothing(tmp_path):
    """hydra.sweep.dir outside output_root: the re-run finds the completed jobs where the sweep wrote them."""
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path / "elsewhere")}
    sweep_dir = tmp_path / "my_sweep"
    args = [sys.executable, "-m", "alignbench", "train", "-m", "task=vqa", "preset=tiny", "score=dot,cosine",
            "analysis.enabled=false", f"hydra.sweep.dir={sweep_dir}"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted(sweep_dir.rglob("run.json"))
    assert len(records) == 2
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in records}
    checkpoints = sorted(p.name for p in sweep_dir.rglob("*.ckpt"))
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("skipped: the same config already completed") == 2
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sweep_dir.rglob("run.json")} == before
    assert sorted(p.name for p in sweep_dir.rglob("*.ckpt")) == checkpoints  # no best-v1.ckpt
    assert not (tmp_path / "elsewhere").exists()


def test_records_made_before_composed_views_rebuild_the_same_data_module():
    """A committed record of the 3-seed comparison (made when data views were overlaid by hand)
    gives the data module the same settings as today's composed config of the same job."""
    import json
    from pathlib import Path

    from omegaconf import OmegaConf

    from alignbench.config import data_config
    from alignbench.run.preflight import compose_run

    root = Path(__file__).resolve().parents[1] / "experiments" / "compare_seeds3" / "runs"
    for task in ("vqa", "retrieval", "t2i"):
        record = json.loads((root / task / "dot" / "seed0" / "run.json").read_text(encoding="utf-8"))
        legacy = data_config(record["config"]["data"], task)
        sizes = [f"data.{k}={record['config']['data'][k]}" for k in ("train_scenes", "val_scenes", "test_scenes")]
        # the default comparison has since been made smaller: the record's sizes, today's composition
        today = OmegaConf.to_container(compose_run([f"preset=compare/default/{task}", "score=dot", *sizes]),
                                       resolve=True)

        def settled(cfg: dict) -> dict:  # None = the constructor's default; noise 0.0 is SceneConfig's default
            out = {k: settled(v) if isinstance(v, dict) else v for k, v in cfg.items() if v is not None}
            return {k: v for k, v in out.items() if not (k == "noise" and v == 0.0)}

        assert settled(legacy) == settled(data_config(today["data"], task)), task


def test_changed_analysis_settings_reanalyse_a_comparison_without_retraining(sweep, capsys):
    records = {p: read_record(p.parent) for p in (sweep / "runs").rglob("run.json")}
    capsys.readouterr()
    assert main(["compare", *TINY, "seeds=2", f"out={sweep}", "--", "trainer.log_every_n_steps=7",
                 "analysis.examples=20"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("[analyse]") == 6 and "[skip]" not in printed
    for path, before in records.items():
        after = read_record(path.parent)
        assert after["status"] == "completed" and after["config"]["analysis"]["examples"] == 20
        assert after["history"] == before["history"] and after["train_seconds"] == before["train_seconds"]
        assert after["metrics"]["test/vqa_acc"] == before["metrics"]["test/vqa_acc"]
    assert main(["compare", *TINY, "seeds=2", f"out={sweep}", "--", "trainer.log_every_n_steps=7",
                 "analysis.examples=20"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 6


def test_compare_workers_import_the_installed_alignbench_not_a_folder_in_the_current_directory(tmp_path, monkeypatch):
    # e.g. compare run from a source checkout beside a wheel install: its alignbench/ has no conf/
    shadow = tmp_path / "alignbench"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the alignbench folder of the current directory')\n")
    (shadow / "__main__.py").write_text("raise SystemExit('the alignbench folder of the current directory')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "preset=smoke", "tasks=[grounding]", "scores=[dot]", "baselines=null", "out=cmp"]) == 0
    assert read_record(tmp_path / "cmp" / "runs" / "grounding" / "dot" / "seed0")["status"] == "completed"


def test_time_left_goes_by_each_tasks_own_run_time():
    from alignbench.compare import Durations, Job

    def job(task):
        return Job(task, "dot", 0, [], Path(task))

    durations = Durations()
    assert durations.remaining([job("vqa")], [], 2) is None  # nothing to go by yet
    durations.add("grounding", 40.0)
    durations.add("t2i", 1300.0)
    durations.add("t2i", 1500.0)
    durations.add("vqa", None)  # a record without a time adds nothing
    assert durations.estimate("t2i") == 1400.0 and durations.estimate("grounding") == 40.0
    assert durations.estimate("vqa") == pytest.approx((40 + 1300 + 1500) / 3)  # no run of its own yet: all runs'
    # two text-to-image runs to go, one grounding run 30 s in, on 2 lanes
    assert durations.remaining([job("t2i"), job("t2i")], [(job("grounding"), 30.0)], 2) == pytest.approx(
        (1400 + 1400 + 10) / 2)
    assert durations.remaining([], [(job("grounding"), 90.0)], 1) == 0.0  # overdue counts as nearly done
