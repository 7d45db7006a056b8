"""The ``alignbench`` command line.

``alignbench train [OVERRIDES…]`` runs the Hydra app (``-m`` for sweeps);
``alignbench list scores|tasks|data|trainers|presets`` shows what a config group offers;
``alignbench report DIR [DIR …] --out OUT`` writes the comparison report of the runs under
the folders; ``alignbench compare [OVERRIDES…]`` runs the default comparison experiment
and writes its report.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .config import CONF_DIR, group_options

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by Ctrl-C
LIST_GROUPS = {"scores": "score", "tasks": "task", "data": "data", "trainers": "trainer", "presets": "preset"}


class UsageError(Exception):
    """A bad command line: reported as one line, exit code 2."""


def _describe(group: str, name: str, search_path: list[str]) -> str:
    for directory in [Path(p) / group for p in search_path] + [CONF_DIR / group]:
        path = directory / f"{name}.yaml"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                text = line.lstrip("# ").strip()
                if line.startswith("#") and text and not text.startswith("@package"):
                    return text
            return ""
    return ""


def preflight(overrides: list[str]) -> None:
    """Check the overrides' group choices, then compose the run's config and check its
    values, before Hydra starts (see :mod:`alignbench.run.preflight`); a problem is a
    :class:`UsageError`."""
    from .run.preflight import ConfigError, check_run, first_of_sweeps, validate_overrides

    try:
        validate_overrides(overrides)
        if not {"--cfg", "-c", "--info", "--shell-completion", "-sc", "--hydra-help"} & set(overrides):
            check_run(first_of_sweeps(overrides))
    except ConfigError as err:
        raise UsageError(str(err)) from None


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler or `kill`) stops this process as Ctrl-C does: a KeyboardInterrupt,
    so records say ``interrupted`` and workers are stopped."""
    def interrupt(signum, frame):  # noqa: ARG001 - the signal handler's signature
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def cmd_train(overrides: list[str]) -> int:
    import hydra

    from .run.train import FAILED_RUNS, INTERRUPTED_RUNS, hydra_entry

    preflight(overrides)
    app = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(hydra_entry)
    # Hydra reads its overrides from sys.argv. Keep argv[0] the program that was run, so
    # that Lightning's DDP launcher, which re-runs `sys.argv` for every other process
    # (with LOCAL_RANK set), starts this same training run there (see main()).
    sys.argv = [sys.argv[0]] + overrides
    del FAILED_RUNS[:], INTERRUPTED_RUNS[:]
    stop_on_sigterm()
    try:
        app()
    except (KeyboardInterrupt, SystemExit):
        if not INTERRUPTED_RUNS:
            raise
        print(f"alignbench: interrupted: {', '.join(INTERRUPTED_RUNS)} (record status 'interrupted'); run the same "
              "command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if FAILED_RUNS:  # a sweep finished, but not every run did
        print(f"alignbench: {len(FAILED_RUNS)} run(s) failed: {', '.join(FAILED_RUNS)}", file=sys.stderr)
        return 1
    return 0


def cmd_list(what: str, search_path: list[str]) -> int:
    group = LIST_GROUPS[what]
    for name in group_options(group, search_path):
        print(f"{name:20s} {_describe(group, name, search_path)}".rstrip())
    return 0


def cmd_report(dirs: list[str], out: str, reference: str) -> int:
    from .results import collect_runs, write_report

    missing = [d for d in dirs if not Path(d).exists()]
    if missing:
        raise UsageError(f"no such results folder: {', '.join(missing)}")
    scores = sorted(set(collect_runs(dirs).runs.get("score", [])))
    if reference is not None and scores and reference not in scores:
        raise UsageError(f"--ref {reference!r} is not a score of these runs; valid choices: {', '.join(scores)}")
    path = write_report(dirs, out, reference)
    print(path)
    return 0


def cmd_compare(overrides: list[str]) -> int:
    from hydra.errors import HydraException

    from .compare import Interrupted, compare_presets, compose_experiment, plan, run_comparison
    from .run.preflight import ConfigError, check_config, search_path_of, validate_overrides

    train_extra: list[str] = []
    if "--" in overrides:  # everything after -- goes to every run's `alignbench train`
        cut = overrides.index("--")
        overrides, train_extra = overrides[:cut], overrides[cut + 1:]
    # the user's config dirs (their own score YAMLs) reach every run and the score check
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
    overrides = [o for o in overrides if o not in searchpath]
    train_extra = searchpath + train_extra
    presets = compare_presets(search_path_of(searchpath))
    known = {"tasks", "scores", "seeds", "first_seed", "out", "jobs", "train", "preset", "baselines", "ref"}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key.lstrip("+~") not in known:
            raise UsageError(f"compare: cannot use {item!r}; give KEY=VALUE with KEY one of: "
                             f"{', '.join(sorted(known))} (or hydra.searchpath=[file://DIR])")
        if key == "preset" and value not in presets:
            raise UsageError(f"unknown preset {value!r}; valid choices: {', '.join(presets)}")
    try:
        cfg = compose_experiment(overrides)
        if train_extra:
            cfg.train = list(cfg.train) + train_extra
        jobs = plan(cfg)  # composes every job's training config once
        for task in dict.fromkeys(j.task for j in jobs):  # one check per task: its runs differ in score and seed
            first = next(j for j in jobs if j.task == task)
            validate_overrides(first.overrides)
            check_config(first.config)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    except HydraException as err:
        raise UsageError(f"compare: {str(err).splitlines()[0]}") from None
    except ValueError as err:
        raise UsageError(f"compare: {err}") from None
    stop_on_sigterm()
    try:
        report, failed = run_comparison(cfg, jobs=jobs)
    except Interrupted as stopped:
        print(f"alignbench: compare interrupted; stopped {len(stopped.jobs)} running job(s) "
              f"({stopped or 'none'}), their records say 'interrupted'; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"report: {report}")
    print(f"        {report.with_suffix('.html')}")
    if failed:
        print(f"alignbench: {len(failed)} run(s) did not complete: {', '.join(j.label for j in failed)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(run_dir: str, overrides: list[str], checkpoint: str, out: str | None) -> int:
    import json

    from .files import write_json_atomic
    from .run.build import rank_zero
    from .run.posthoc import evaluate

    if not (Path(run_dir) / "run.json").is_file():
        raise UsageError(f"no run record in {run_dir!r} (expected {Path(run_dir) / 'run.json'})")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"evaluate: overrides are KEY=VALUE, got {bad[0]!r}")
    try:
        metrics = evaluate(run_dir, overrides, checkpoint)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    if rank_zero():
        if out:
            write_json_atomic(out, metrics)
        print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def cmd_analyze(run_dirs: list[str], examples: int | None, costly: int | None) -> int:
    from .run.posthoc import analyze

    for run_dir in run_dirs:
        if not (Path(run_dir) / "run.json").is_file():
            raise UsageError(f"no run record in {run_dir!r} (expected {Path(run_dir) / 'run.json'})")
    for run_dir in run_dirs:
        try:
            record = analyze(run_dir, examples, costly)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(str(err)) from None
        shown = {k: round(record["metrics"][k], 2) for k in sorted(record.get("analysis_metrics") or ())}
        print(f"{run_dir}: {shown} ({record['analysis_seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignbench",
        description="Benchmark attention alignment score functions on vision-and-language tasks.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser(
        "train", help="train, validate and test one run (Hydra overrides; -m sweeps)",
        description="Train one run, e.g. `alignbench train task=vqa data=easy_vqa score=ban seed=0`. "
        "All arguments are Hydra overrides; `-m` sweeps (`score=dot,ban seed=0,1,2`); "
        "`--cfg job` prints the composed config.",
    )
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, e.g. score=ban seed=1")
    lst = sub.add_parser("list", help="list score functions, tasks, data sets, trainers or presets")
    lst.add_argument("what", choices=sorted(LIST_GROUPS), help="which config group to list")
    lst.add_argument("--searchpath", action="append", default=[], help="extra config dir (like hydra.searchpath)")
    cmp = sub.add_parser(
        "compare", help="run the default comparison (every score, every task) and write its report",
        description="Run experiments/compare.yaml: every score function on every task on the built-in data, "
        "then write the report. Overrides: preset=default|smoke|converged, seeds=N, ref=SCORE, scores=[...], tasks=[...], "
        "out=DIR, jobs=N, hydra.searchpath=[file://DIR] (your own score YAMLs in DIR/score/; a score may "
        "also be a class path such as my_pkg.scores.MyScore); after `--`, training overrides for every run "
        "(e.g. -- model.hidden_dim=256). "
        "Completed runs with the same config are skipped (resume).",
    )
    cmp.add_argument("overrides", nargs="*", help="e.g. seeds=3 preset=smoke [-- TRAIN OVERRIDES]")
    ev = sub.add_parser("evaluate", help="recompute a finished run's test metrics from its checkpoint",
                        description="Test a run's best (or last) checkpoint again with its recorded config and "
                        "dotted overrides, e.g. `alignbench evaluate RUN_DIR trainer.strategy=ddp "
                        "trainer.devices=2`. Prints the metrics as JSON; the run's files are not changed.")
    ev.add_argument("run_dir", help="a run folder (holding run.json and checkpoints/)")
    ev.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides of the recorded config")
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--out", help="also write the metrics to this JSON file")
    an = sub.add_parser("analyze", help="recompute a run's interpretability analysis from its checkpoint",
                        description="Grounding (pointing game, attention mass on the ground truth) and "
                        "faithfulness (deletion curves, AOPC, flip rate, Kendall tau with integrated gradients "
                        "and leave-one-out) of finished runs of any task (VQA, retrieval, text-to-image), "
                        "written into their run.json with their attention examples.")
    an.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (holding run.json, checkpoints/)")
    an.add_argument("--examples", type=int, help="test questions for grounding and deletion (default: the run's)")
    an.add_argument("--costly-examples", type=int, help="of those, for integrated gradients and leave-one-out")
    rep = sub.add_parser("report", help="write the comparison report of the runs under DIR(s)",
                         description="Read every run.json under the folders and write report.md, report.html, "
                         "runs.csv, summary.csv and figures/ into OUT.")
    rep.add_argument("dirs", nargs="+", metavar="DIR", help="folders holding run records (searched recursively)")
    rep.add_argument("--out", required=True, help="folder for the report files")
    rep.add_argument("--ref", default=None, metavar="SCORE",
                     help="the reference score: Δ, its 95%% interval and P(> ref) compare every score with it "
                     "(default: scaled_dot)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    commands = {"train", "compare", "report", "evaluate", "analyze", "list", "-h", "--help", "--debug"}
    if os.environ.get("LOCAL_RANK") and argv and argv[0] not in commands:
        argv = ["train"] + argv  # a DDP worker started by Lightning: the run's overrides alone
    try:
        if argv[:1] == ["train"] and not {"-h", "--help"} & set(argv[1:]):
            # everything after `train` belongs to Hydra (including -m / --cfg job)
            return cmd_train(argv[1:])
        if argv[:1] == ["compare"] and not {"-h", "--help"} & set(argv[1:]):
            return cmd_compare(argv[1:])
        args = parser.parse_args(argv)
        if args.command == "list":
            return cmd_list(args.what, [p.removeprefix("file://") for p in args.searchpath])
        if args.command == "analyze":
            return cmd_analyze(args.run_dirs, args.examples, args.costly_examples)
        if args.command == "evaluate":
            return cmd_evaluate(args.run_dir, args.overrides, args.checkpoint, args.out)
        if args.command == "report":
            return cmd_report(args.dirs, args.out, args.ref)
        parser.print_help()
        return EXIT_USAGE
    except UsageError as err:
        if debug:
            raise
        print(f"alignbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
