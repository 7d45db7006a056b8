"""Cluster and parallel launcher configs compose (`--cfg hydra`), and the joblib launcher runs a sweep."""

import importlib.util
import os
import subprocess
import sys

import pytest

LAUNCHERS = [
    ("slurm", "hydra_plugins.hydra_submitit_launcher",
     ["hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "timeout_min: 240", "gpus_per_node: 1"]),
    ("ray_cluster", "hydra_plugins.hydra_ray_launcher",
     ["hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "address: auto"]),
    ("joblib", "hydra_plugins.hydra_joblib_launcher", ["hydra_plugins.hydra_joblib_launcher.joblib_launcher"]),
]


def cli(*args, tmp_path):
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.parametrize("name, plugin, expected", LAUNCHERS, ids=[n for n, _, _ in LAUNCHERS])
def test_launcher_config_composes(tmp_path, name, plugin, expected):
    if importlib.util.find_spec(plugin) is None:  # the ray extra is too large for the test environment
        pytest.skip(f"{plugin} not installed (pip install 'alignbench[{name.split('_')[0]}]')")
    result = cli("train", f"hydra/launcher={name}", "score=ban", "--cfg", "hydra", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for text in expected:
        assert text in result.stdout, text
    assert not list(tmp_path.rglob("run.json"))  # composing runs nothing


def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    result = cli("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "task=vqa", "preset=tiny",
                 "score=dot,cosine", "trainer.enable_progress_bar=false", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    records = sorted(p.parent.parent.parent.name for p in tmp_path.rglob("run.json"))
    assert records == ["cosine", "dot"]
