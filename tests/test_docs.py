"""The documentation: the README stays a front door, the getting-started commands run (shrunk),
every command shown composes, and the API reference lists every score class and metric."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import alignbench.compare
import alignbench.metrics
from alignbench.cli import main
from alignbench.config import list_scores, score_config_path
from alignbench.run.record import read_record

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GETTING_STARTED = DOCS / "getting-started.md"
TESTED = "<!-- tested: tests/test_docs.py -->"  # the line before a fenced block this file runs

# every run the tests start is shrunk: tiny data and model, a small analysis
TINY_TRAIN = {"preset": "tiny", "data.test_scenes": "60", "analysis.examples": "40", "analysis.costly_examples": "8"}
TINY_COMPARE = {"tasks": "[vqa]", "scores": "[dot]", "baselines": "null", "jobs": "1"}
TINY_COMPARE_TRAIN = ["data.test_scenes=60", "analysis.examples=40", "analysis.costly_examples=8"]


def fenced_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """``(language, body, tested)`` of every fenced code block of a Markdown file."""
    blocks, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("```"):
            lang = line[3:].strip()
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            blocks.append((lang, "\n".join(lines[i + 1:end]), previous == TESTED))
            i = end
        i += 1
    return blocks


def commands(body: str) -> list[list[str]]:
    """The commands of a shell block as argument lists (comments dropped)."""
    return [args for line in body.splitlines() if (args := shlex.split(line, comments=True))]


def setup_commands(path: Path) -> list[str]:
    """The one-line install commands (``python3 -m venv ... && ...``) of a Markdown file."""
    return [line.strip() for lang, body, _ in fenced_blocks(path) if lang == "bash"
            for line in body.splitlines() if line.startswith("python3 -m venv")]


def ci_test_command() -> str:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(lines) == 1, lines
    return lines[0]


def with_overrides(args: list[str], extra: dict[str, str]) -> list[str]:
    """``args`` with ``key=value`` overrides added where the command does not set the key."""
    keys = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    return args + [f"{k}={v}" for k, v in extra.items() if k not in keys]


def shrunk(args: list[str]) -> list[str]:
    """A documented ``alignbench`` command made cheap: tiny presets and sizes."""
    if args[0] == "train" and "--cfg" not in args and "-m" not in args:
        return with_overrides(args, TINY_TRAIN)
    if args[0] == "compare":
        head, tail = (args[:args.index("--")], args[args.index("--"):]) if "--" in args else (args, ["--"])
        if not any(a.startswith("preset=") for a in head):  # the main job, smoke-sized: the smoke
            head = head + ["preset=smoke"]                  # comparison that follows then resumes it
        return with_overrides(head, TINY_COMPARE) + tail + TINY_COMPARE_TRAIN
    return args


# --------------------------------------------------------------------------- the README


def test_readme_is_a_front_door_with_the_two_setup_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    setup = setup_commands(README)
    assert len(setup) == 2, setup
    main_job, tests = sorted(setup, key=lambda c: "pytest" in c)
    assert main_job.endswith("&& alignbench compare")
    assert tests == ci_test_command(), "the README's test command must be exactly what .ci/run runs"
    assert setup_commands(GETTING_STARTED) == [main_job, tests]


def test_readme_links_point_at_files_that_exist():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, missing


# --------------------------------------------------------------------------- getting started


def test_getting_started_commands_run(tmp_path, monkeypatch, capsys):
    """Every command of the page's tested blocks, in a fresh folder, shrunk to tiny sizes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGNBENCH_OUTPUT", "outputs")
    readme_setup = setup_commands(README)
    ran = []
    for lang, body, tested in fenced_blocks(GETTING_STARTED):
        if not tested:
            continue
        assert lang == "bash", f"a tested block must be bash, got {lang!r}"
        for line in body.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith("python3 -m venv"):  # the set-up commands: the README's, installs not rerun
                assert line.strip() in readme_setup
                steps = [s.strip() for s in line.split("&&")]
            else:
                steps = [line]
            for step in steps:
                args = shlex.split(step, comments=True)
                if args[0] != "alignbench":
                    continue
                assert main(shrunk(args[1:])) == 0, step
                ran.append(args[1])
    assert {"compare", "report", "list", "train"} <= set(ran), ran
    out = capsys.readouterr().out
    assert "dot" in out and "scaled_dot" in out  # alignbench list scores
    smoke = tmp_path / "outputs" / "compare" / "smoke"
    assert (smoke / "report" / "report.md").is_file()
    assert read_record(smoke / "runs" / "vqa" / "dot" / "seed0")["status"] == "completed"
    assert (tmp_path / "my_report" / "report.md").is_file()
    records = list((tmp_path / "outputs" / "vqa" / "synthetic" / "additive" / "seed1").glob("*/run.json"))
    assert len(records) == 1 and read_record(records[0].parent)["status"] == "completed"


def test_tested_python_examples_run(capsys):
    for path in sorted(DOCS.rglob("*.md")):
        for lang, body, tested in fenced_blocks(path):
            if tested and lang == "python":
                exec(compile(body, str(path), "exec"), {"__name__": "__docs__"})  # noqa: S102
    assert "torch.Size([2, 4, 14, 36])" in capsys.readouterr().out


# --------------------------------------------------------------------------- every command shown


def documented_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """``(page, args, env)`` of every ``alignbench train``/``compare`` line of the docs and README."""
    found = []
    for path in [README, *sorted(DOCS.rglob("*.md"))]:
        for lang, body, _ in fenced_blocks(path):
            if lang != "bash":
                continue
            for line in body.splitlines():
                for step in line.split("&&"):
                    args = shlex.split(step, comments=True)
                    env = {}
                    while args and re.fullmatch(r"[A-Z_0-9]+=.*", args[0]):
                        key, value = args.pop(0).split("=", 1)
                        env[key] = value
                    if len(args) > 1 and args[0] == "alignbench" and args[1] in ("train", "compare"):
                        found.append((str(path.relative_to(ROOT)), args[1:], env))
    return found


@pytest.fixture
def users_score(tmp_path, monkeypatch):
    """The scores page's own example: ``my_pkg/scores.py`` and ``my_conf/score/neg_distance.yaml``."""
    blocks = fenced_blocks(DOCS / "scores.md")
    code = next(b for lang, b, _ in blocks if lang == "python" and b.startswith("# my_pkg/scores.py"))
    yaml = next(b for lang, b, _ in blocks if lang == "yaml" and b.startswith("# my_conf/score/neg_distance.yaml"))
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "scores.py").write_text(code)
    (tmp_path / "my_conf" / "score").mkdir(parents=True)
    (tmp_path / "my_conf" / "score" / "neg_distance.yaml").write_text(yaml)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def test_every_documented_command_composes(users_score, monkeypatch, capsys):
    """``alignbench train`` lines compose (``--cfg job``); ``alignbench compare`` lines pass every
    check and plan their jobs (nothing is trained). Sweeps (``-m``) are exercised in test_compare."""
    monkeypatch.setattr(alignbench.compare, "run_comparison",
                        lambda cfg, jobs=None, **_: (users_score / "report.md", []))
    # a job composes at every seed if it composes at one: compose each (task, score, overrides) once
    composed, compose_run = {}, alignbench.compare.compose_run

    def compose_once(overrides: list[str]):
        key = tuple(o for o in overrides if not o.startswith("seed="))
        if key not in composed:
            composed[key] = compose_run(overrides)
        return composed[key]

    monkeypatch.setattr(alignbench.compare, "compose_run", compose_once)
    checked, seen = 0, set()
    for page, args, env in documented_commands():
        if "-m" in args or tuple(args) in seen:
            continue
        seen.add(tuple(args))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        if args[0] == "train" and "--cfg" not in args:
            args = args + ["--cfg", "job"]
        assert main(args) == 0, f"{page}: alignbench {shlex.join(args)}"
        checked += 1
    assert checked >= 20, checked


# --------------------------------------------------------------------------- the API reference


def metric_names() -> dict[str, list[str]]:
    """Public functions and classes of every ``alignbench.metrics`` submodule (its ``__all__`` if any)."""
    names = {}
    for info in pkgutil.iter_modules(alignbench.metrics.__path__):
        module = importlib.import_module(f"alignbench.metrics.{info.name}")
        public = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
        names[module.__name__] = [n for n in public if (inspect.isfunction(getattr(module, n)) or inspect.isclass(
            getattr(module, n))) and getattr(module, n).__module__ == module.__name__]
    return names


def test_api_reference_lists_every_score_class_and_metric(tmp_path):
    try:
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
    except ImportError:  # pragma: no cover
        pytest.fail('the docs tools are missing: pip install -e ".[docs]"')
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site")))  # strict: warnings fail
    api = tmp_path / "site" / "api"
    ids = {page.parent.name: set(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))
           for page in api.glob("*/index.html")}

    classes = {OmegaConf.load(score_config_path(name))["_target_"] for name in list_scores()}
    missing = sorted(c for c in classes if f"alignbench.scores.{c.rsplit('.', 1)[-1]}" not in ids["scores"])
    assert not missing, f"registered score classes without an API entry (docstring?): {missing}"

    expected = [f"{module}.{name}" for module, names in metric_names().items() for name in names]
    assert "alignbench.metrics.vqa.vqa_accuracy" in expected and "alignbench.metrics.grounding.region_mass" in expected
    missing = sorted(set(expected) - ids["metrics"])
    assert not missing, f"public metrics without an API entry (docstring?): {missing}"
    missing = sorted(n for n in alignbench.metrics.__all__
                     if f"{getattr(alignbench.metrics, n).__module__}.{n}" not in ids["metrics"])
    assert not missing, f"alignbench.metrics re-exports without an API entry: {missing}"

    for module in ("attention", "results"):
        package = importlib.import_module(f"alignbench.{module}")
        missing = sorted(n for n in package.__all__ if f"alignbench.{module}.{n}" not in ids[module])
        assert not missing, f"alignbench.{module}: no API entry for {missing}"
