"""Where a run comes from and what makes it comparable: the code version in every record,
paired seeds across scores, early stopping, and analyses redone without retraining."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import alignbench
from alignbench.cli import main
from alignbench.run.build import build_parts
from alignbench.run.preflight import compose_run
from alignbench.run.record import code_version, git_state, read_record

ROOT = Path(alignbench.__file__).resolve().parents[1]
HAS_GIT = shutil.which("git") is not None


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_git_state_says_dirty_only_when_the_code_differs(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    repo = tmp_path / "repo"
    (repo / "alignbench").mkdir(parents=True)
    (repo / "experiments" / "x").mkdir(parents=True)
    (repo / "alignbench" / "m.py").write_text("a = 1\n")
    (repo / "experiments" / "x" / "run.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "experiments" / "x" / "run.json").write_text('{"status": "completed"}\n')  # a result, not code
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "experiments" / "x" / "new.yaml").write_text("a: 1\n")  # a new file beside results, not code
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "alignbench" / "new_score.py").write_text("b = 1\n")  # new, uncommitted code a run may use
    assert git_state(repo) == {"commit": head, "dirty": True}
    (repo / "alignbench" / "new_score.py").unlink()
    (repo / "alignbench" / "m.py").write_text("a = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True}


def test_code_version_names_the_package_version_and_the_commit_of_a_checkout():
    from importlib import metadata

    version = code_version()
    assert version.startswith(metadata.version("alignbench"))
    state = git_state(ROOT) if HAS_GIT else None
    if state is None:
        assert "+g" not in version  # neither a checkout nor a wheel built from one
    else:
        assert version.split("+g")[1].split(".")[0] == state["commit"][:12]
        assert version.endswith(".dirty") == state["dirty"]


def _shared(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of the shared layers: every parameter that is not in a score module."""
    score_modules = [name for name, module in model.named_modules()
                     if isinstance(module, alignbench.scores.AlignmentScore)]
    return {k: v for k, v in model.state_dict().items()
            if not any(k == m or k.startswith(m + ".") for m in score_modules)}


def _parts(task: str, score: str, seed: int):
    cfg = compose_run([f"task={task}", "preset=tiny", f"score={score}", f"seed={seed}"])
    return build_parts(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("task", ["t2i", "vqa", "retrieval", "grounding"])
def test_a_seed_gives_every_score_the_same_shared_weights_and_data_order(task):
    # text-to-image builds a score module per generator stage, between its shared layers: the
    # scores with parameters used to shift the initial weights of every layer built after them
    (data_a, model_a), (data_b, model_b) = _parts(task, "uniform", 3), _parts(task, "additive", 3)
    shared_a, shared_b = _shared(model_a), _shared(model_b)
    assert shared_a.keys() == shared_b.keys() and len(shared_a) > 5
    assert all(torch.equal(shared_a[k], shared_b[k]) for k in shared_a)
    assert sum(p.numel() for p in model_b.parameters()) > sum(p.numel() for p in model_a.parameters())
    for data in (data_a, data_b):
        data.setup("fit")
    batch_a, batch_b = next(iter(data_a.train_dataloader())), next(iter(data_b.train_dataloader()))
    for key, value in batch_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, batch_b[key]), key
    # and another seed gives other weights (the pairing is per seed, not one start for all)
    _, model_c = _parts(task, "uniform", 4)
    shared_c = _shared(model_c)
    assert any(not torch.equal(shared_a[k], shared_c[k]) for k in shared_a if shared_a[k].is_floating_point())


def test_early_stopping_ends_a_run_that_stopped_improving_and_tests_its_best_epoch(tmp_path):
    # a learning rate too small to change anything: validation never improves after epoch 0
    run = tmp_path / "run"
    args = ["train", "task=grounding", "preset=tiny", "trainer.max_epochs=9", "early_stopping.patience=2",
            "model.lr=1e-12", "analysis.examples=30", "analysis.costly_examples=4", f"hydra.run.dir={run}"]
    assert main(args) == 0
    record = read_record(run)
    assert record["status"] == "completed" and record["stopped_early"] is True
    assert record["epochs"] == 3 == len(record["history"])  # epoch 0, then 2 without improvement
    assert record["config"]["early_stopping"] == {"patience": 2, "min_delta": 0.0}
    assert record["code_version"] == code_version()


def test_changed_analysis_settings_reanalyse_from_the_checkpoint_without_retraining(tmp_path):
    run = tmp_path / "run"
    base = ["train", "task=grounding", "preset=tiny", "analysis.costly_examples=4", f"hydra.run.dir={run}"]
    assert main([*base, "analysis.examples=30"]) == 0
    first = read_record(run)
    checkpoint = (run / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    assert main([*base, "analysis.examples=60"]) == 0
    second = read_record(run)
    assert (run / "checkpoints" / "best.ckpt").stat().st_mtime_ns == checkpoint  # not retrained
    assert second["history"] == first["history"] and second["started"] == first["started"]
    assert second["config"]["analysis"]["examples"] == 60 and first["config"]["analysis"]["examples"] == 30
    assert second["metrics"]["test/phrase_r1"] == first["metrics"]["test/phrase_r1"]  # the same trained model
    assert second["metrics"]["test/attn_mass_gt"] != first["metrics"]["test/attn_mass_gt"]  # on twice the phrases


class _Curve(__import__("pytorch_lightning").LightningModule):
    """A model whose validation metric follows ``values`` epoch by epoch (nothing is learned)."""

    def __init__(self, values):
        super().__init__()
        self.layer, self.values = torch.nn.Linear(1, 1), values

    def training_step(self, batch, index):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, index):
        pass

    def on_validation_epoch_end(self):
        self.log("val/x", float(self.values[min(self.current_epoch, len(self.values) - 1)]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return [torch.zeros(1, 1)]

    def val_dataloader(self):
        return [torch.zeros(1, 1)]


@pytest.mark.parametrize("values, floor, epochs", [
    # a dip below the floor that would have used up the patience: the run goes on while it improves
    ([0.5, 0.4, 0.4, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.99, 0.99, 0.99, 0.99], 6, 13),
    ([0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], 6, 6),  # flat since epoch 1: stops at the floor
    ([0.5, 0.6, 0.6, 0.6, 0.6, 0.6], None, 5),  # no floor: epoch 1, then 3 without improvement
])
def test_early_stopping_decides_nothing_below_the_floor(values, floor, epochs):
    import pytorch_lightning as pl

    from alignbench.run.train import early_stopping

    stopper = early_stopping("val/x", patience=3)
    trainer = pl.Trainer(max_epochs=14, min_epochs=floor, callbacks=[stopper], enable_progress_bar=False,
                         logger=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(_Curve(values))
    assert trainer.current_epoch == epochs
