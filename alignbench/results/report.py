"""The comparison report: ``report.md``, a self-contained ``report.html``, ``runs.csv``
and ``summary.csv`` (plus ``figures/*.png``) from run records alone.

Everything is first built in a staging folder inside ``out``; only when all of it exists
are the files moved into place one by one with ``os.replace``, so a failure leaves an
earlier report untouched and never a half-written file.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ..config import data_config
from ..files import write_atomic
from .collect import RunSet, collect_runs
from .claims import check_claims, claims_table
from .figures import (attention_heatmaps, deletion_curves, difference_plot, entropy_per_map, metric_bars,
                      validation_curves)
from .tables import (BASELINE, Table, aggregate, interpretability_table, most_and_least, ranking_table, task_groups,
                     task_table)

FIGURES = "figures"  # the report's own folder of figures inside ``out``
DRAWN = ".drawn"  # in FIGURES: the names of the figures the last report drew, one per line

TASK_TITLES = {"vqa": "Visual question answering", "retrieval": "Image-text retrieval", "t2i": "Text-to-image",
               "grounding": "Phrase grounding"}
REAL_CEILING = ("test/real_r_precision", "test/real_attribute_acc", "test/real_object_acc")


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join("---" for _ in table.columns) + "|"]
    for i, row in enumerate(table.rows):
        cells = [f"**{c}**" if (i, j) in table.best else c for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cells = "".join(f"<td class='best'>{html.escape(c)}</td>" if (i, j) in table.best else f"<td>{html.escape(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts))


class _Doc:
    """Markdown and HTML built side by side from the same blocks."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md += [text, ""]
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, table: Table) -> None:
        self.md += _md_table(table) + [""]
        self.html.append(_html_table(table))
        if table.note:
            self.md += [f"_{table.note}_", ""]
            self.html.append(f"<p class='note'>{html.escape(table.note)}</p>")

    def figure(self, path: Path, rel: str, caption: str) -> None:
        self.md += [f"![{caption}]({rel})", ""]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def bullets(self, items: list[str]) -> None:
        self.md += [f"- {item}" for item in items] + [""]
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")


STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;background:#e4f2e4}
img{max-width:100%}figure{margin:1em 0}figcaption,.note{font-size:12px;color:#555}"""


def _ceiling(runs: pd.DataFrame) -> str:
    cols = [c for c in REAL_CEILING if c in runs.columns and runs[c].notna().any()]
    if not cols:
        return ""
    parts = [f"{c[len('test/real_'):]} {runs[c].mean():.2f}" for c in cols]
    return "Ceiling — the same evaluators on the real images of the same captions: " + ", ".join(parts) + "."


def _settings(records: list[dict]) -> str:
    """The training set-up shared by a comparison's runs, in one sentence (from their records)."""
    def common(get):
        values = set()
        for record in records:
            try:
                values.add(str(get(record)))
            except (KeyError, TypeError):
                return None
        return values.pop() if len(values) == 1 else "varies"

    parts = []
    sizes = common(lambda r: "/".join(str(r["data_sizes"][k]) for k in ("train", "val", "test")))
    if sizes:
        parts.append(f"train/val/test examples {sizes}")
    for label, get in (("epochs", lambda r: r["config"]["trainer"]["max_epochs"]),
                       ("hidden size", lambda r: r["config"]["model"]["hidden_dim"]),
                       ("glimpses", lambda r: r["config"]["model"]["glimpses"]),
                       ("batch size", lambda r: data_config(r["config"]["data"], r["task"])["batch_size"])):
        value = common(get)
        if value is not None:
            parts.append(f"{label} {value}")
    return ("Set-up (the same for every score): " + ", ".join(parts) + ".") if parts else ""


def _relative(path: str | Path, base: Path) -> str:
    """``path`` relative to ``base`` (both made absolute first), with forward slashes."""
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


CONVERGED = "experiments/converged"  # the committed converged comparison


def _code_versions(runs: RunSet) -> str:
    """Which version of the code made the runs (training, and the analysis when it was done
    again by another), as a warning when they come from more than one."""
    counts: dict[str, int] = {}
    for run_dir in runs.runs.get("run_dir", []):
        record = runs.records[run_dir]
        version = str(record.get("code_version") or "an unknown version (recorded before code_version)")
        if record.get("analysis_code_version") not in (None, record.get("code_version")):
            version += f" (analysed by {record['analysis_code_version']})"
        counts[version] = counts.get(version, 0) + 1
    if not counts:
        return ""
    if len(counts) == 1:
        return f"Code: every run comes from {next(iter(counts))}."
    listed = "; ".join(f"{v}: {n} run(s)" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"Warning: these runs come from {len(counts)} versions of the code ({listed}); differences between "
            "scores may include differences between code versions.")


def _budget(runs: RunSet) -> str:
    """What the training budget of the runs means for reading them."""
    stopping = [((runs.records[d].get("config") or {}).get("early_stopping") or {}).get("patience")
                for d in runs.runs.get("run_dir", [])]
    if not stopping:
        return ""
    if all(p is None for p in stopping):
        return ("A quick look: every run trained for a fixed number of epochs, so a difference between scores "
                "says how fast a score learns as much as what it reaches. The converged comparison "
                f"(`alignbench compare preset=converged seeds=5`, committed in {CONVERGED}/) trains every run "
                "until validation stops improving.")
    if all(p is not None for p in stopping):
        early = sum(bool(runs.records[d].get("stopped_early")) for d in runs.runs["run_dir"])
        return (f"Converged: every run trained until its validation metric had not improved for its patience "
                f"(early stopping; {early} of {len(stopping)} runs stopped before their epoch bound), and its best "
                "epoch is tested.")
    return "The runs mix fixed-budget and early-stopped training."


def _sources_text(sources: list[str], listed: int = 3) -> str:
    """The folders a report read: named when few, else counted under their common folder
    (a shell glob such as ``runs/*/*/seed[0-3]`` passes one folder per run)."""
    if len(sources) <= listed:
        return ", ".join(sources)
    return f"{len(sources)} folders under {os.path.commonpath(sources) or '.'}"  # all relative (_relative)


def build_report(runs: RunSet, sources: list[str], staging: Path, out: Path | None = None,
                 reference: str | None = None) -> list[str]:
    """Write the report files into ``staging`` (to be moved into ``out``); return their
    names relative to it. Paths in the report are relative to ``out``, so the results
    folder can move. ``reference``: the score every other is compared with (Δ, P(>);
    default ``scaled_dot``)."""
    reference = reference or BASELINE
    base = Path(out) if out is not None else staging
    sources = [_relative(s, base) for s in sources]
    figures = staging / FIGURES
    summary = aggregate(runs.runs, reference) if len(runs.runs) else pd.DataFrame(
        columns=["task", "data", "score", "metric", "n", "mean", "std", "ci_low", "ci_high", "p_better_than_ref"])
    doc = _Doc()
    doc.heading(1, "alignbench report")
    doc.para(f"{len(runs.runs)} completed run(s) from {_sources_text(sources)}; {len(runs.skipped)} skipped. "
             "Only the attention score function differs within a comparison.")
    for text in (_budget(runs), _code_versions(runs)):
        if text:
            doc.para(text)
    if len(runs.runs):
        unpaired = sum(not runs.records[d].get("code_version") for d in runs.runs["run_dir"])
        caveat = (f" ({unpaired} run(s) recorded before code_version predate that pairing: their seeds share the data "
                  "order but not always the initial weights)") if unpaired else ""
        doc.para(f"Statistics: every score of a comparison trains with the same seeds, and a seed gives every score "
                 f"the same data order and initial shared weights{caveat}, so results are compared seed by seed. The 95% "
                 f"interval of a mean is a percentile bootstrap over seeds (optimistic with few seeds: 3 seeds have 10 "
                 f"distinct resamples); differences between scores, and the bold marks and claims that rest on them, "
                 f"use Student-t intervals of the per-seed differences, which keep their level with few seeds. "
                 f"Reference score: {reference}" + ("." if reference in set(runs.runs["score"]) else
                                                     " (not among these runs: no Δ or P(>) columns)."))
        doc.heading(2, "Cross-task ranking")
        doc.table(ranking_table(runs.runs, summary))
        verdicts = check_claims(runs.runs, runs.records)
        if verdicts:
            doc.heading(2, "Claims")
            doc.table(claims_table(verdicts))
    groups = task_groups(runs.runs)
    for task, data in groups:
        doc.heading(2, f"{TASK_TITLES.get(task, task)}: {data}")
        group_runs = runs.runs[(runs.runs["task"] == task) & (runs.runs["data"] == data)]
        settings = _settings([runs.records[d] for d in group_runs["run_dir"]])
        if settings:
            doc.para(settings)
        doc.table(task_table(task, data, runs.runs, summary, reference))
        if task == "t2i" and _ceiling(group_runs):
            doc.para(_ceiling(group_runs))
        if task == "grounding" and "test/phrase_upper_bound" in group_runs.columns:
            doc.para(f"Ceiling — phrases with a region over the IoU threshold (no ranking localises more): "
                     f"{group_runs['test/phrase_upper_bound'].mean():.2f}.")
        slug = _slug(task, data)
        drawn = [
            (metric_bars(task, data, runs.runs, summary, figures / f"{slug}_metrics.png"), "metrics per score"),
            (difference_plot(task, data, runs.runs, reference, figures / f"{slug}_difference.png"),
             f"difference to {reference}"),
            (validation_curves(task, data, runs, figures / f"{slug}_val_curves.png"), "validation curves"),
            (entropy_per_map(task, data, runs.runs, summary, figures / f"{slug}_entropy.png"), "attention entropy per map"),
            (attention_heatmaps(task, data, runs, figures / f"{slug}_attention.png"), "attention maps, same examples"),
        ]
        for path, caption in drawn:
            if path is not None:
                doc.figure(path, f"figures/{path.name}", f"{task}/{data}: {caption}")
        if task == "t2i":
            for score in sorted(group_runs["score"].unique()):
                run_dir = group_runs[group_runs["score"] == score].sort_values("seed")["run_dir"].iloc[0]
                grid = Path(run_dir) / "samples.png"
                if grid.is_file():
                    target = figures / f"{slug}_samples_{_slug(score)}.png"
                    shutil.copyfile(grid, target)
                    doc.figure(target, f"figures/{target.name}", f"{task}/{data}: samples of {score}")
    interpretable = [(t, d, interpretability_table(t, d, runs.runs, summary)) for t, d in groups]
    interpretable = [(t, d, table) for t, d, table in interpretable if table is not None]
    if interpretable:
        doc.heading(2, "Interpretability")
        doc.para("Is each score's attention where the evidence is? Every map is reduced the same way to attention "
                 "mass per region (each map made a distribution over word-region pairs, summed over words, "
                 "averaged over glimpses), on the first test questions (see each run's analysis settings).")
        if any(task == "t2i" for task, _, _ in interpretable):
            doc.para("Text-to-image: the generated image's regions attend over the caption's words, so the evidence is "
                     "words: grounding asks where each described object's colour and shape words are drawn, and "
                     "deletion hides words (attention mass per word: summed over regions, averaged over stages).")
    for task, data, table in interpretable:
        doc.heading(3, f"{TASK_TITLES.get(task, task)}: {data}")
        doc.table(table)
        statements = []
        for metric, what in (("test/aopc_gain", "faithful by AOPC gain"), ("test/tau_loo", "faithful by τ LOO"),
                             ("test/pointing_acc", "grounded by pointing accuracy")):
            pair = most_and_least(task, data, summary, metric)
            if pair:
                statements.append(f"Most {what}: {pair[0]}; least: {pair[1]}.")
        if statements:
            doc.para(" ".join(statements))
        path = deletion_curves(task, data, runs, figures / f"{_slug(task, data)}_deletion.png")
        if path is not None:
            doc.figure(path, f"figures/{path.name}", f"{task}/{data}: deletion curves")
    doc.heading(2, "Skipped runs")
    doc.bullets([f"{_relative(path, base)}: {reason}" for path, reason in runs.skipped] if runs.skipped else ["none"])

    (staging / "report.md").write_text("\n".join(doc.md).rstrip() + "\n", encoding="utf-8")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>alignbench report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(doc.html)}</body></html>\n")
    (staging / "report.html").write_text(page, encoding="utf-8")
    table = runs.runs.copy()
    if len(table):
        table["run_dir"] = [_relative(d, base) for d in table["run_dir"]]
    table.to_csv(staging / "runs.csv", index=False, float_format="%.6g")
    summary.to_csv(staging / "summary.csv", index=False, float_format="%.6g")
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())


def _remove_old_figures(folder: Path, written: set[Path]) -> None:
    """Remove the figures that the previous report in ``folder`` drew (its :data:`DRAWN` list)
    and this one did not (a figure whose runs or measures are gone would otherwise stay beside
    the new report), then list this report's. Files the report never drew are left alone."""
    listing = folder / DRAWN
    if listing.is_file():
        for name in listing.read_text(encoding="utf-8").splitlines():
            path = folder / name
            if name and "/" not in name and path not in written and path.is_file():
                path.unlink()
    if folder.is_dir():
        drawn = sorted(p.name for p in written if p.parent == folder)
        write_atomic(listing, lambda tmp: tmp.write_text("".join(f"{name}\n" for name in drawn), encoding="utf-8"))


def write_report(dirs: list[str | Path], out: str | Path, reference: str | None = None) -> Path:
    """Collect the records under ``dirs`` and write the report into ``out`` (``reference``: the
    score the others are compared with); returns the path of ``report.md``. Figures that the
    previous report in ``out`` drew and this one does not are removed; other files are left
    alone."""
    runs = collect_runs(dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        names = build_report(runs, [str(d) for d in dirs], staging, out, reference)
        for name in names:  # figures first, the pages that show them last
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
        _remove_old_figures(out / FIGURES, {out / name for name in names})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.md"
