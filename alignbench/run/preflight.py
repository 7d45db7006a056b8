"""Checks of a training command line before anything runs.

:func:`check_run` composes the config exactly as ``alignbench train`` will, checks every
value given to the trainer, the task model and the data module against the types their
constructors declare, and builds the data module (constructors only check their paths;
no data is read). Each problem is a :class:`ConfigError` with one line naming the key,
the bad value and what is valid, so the CLI can exit with code 2 before any run folder
or record exists.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from ..config import CONF_DIR, GROUPS, group_options
from ..ranges import SEED, Range


class ConfigError(ValueError):
    """A bad value in a run's config (one line: key, value, what is valid)."""


def _locate(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def _accepts(value: Any, hint: Any) -> tuple[bool, str]:
    """Whether ``value`` (plain YAML data) fits the type ``hint``; and the hint in words
    (ranges of ``Annotated`` hints are checked by :func:`_range_problem`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _accepts(value, args[0])
    if hint is inspect.Parameter.empty or hint is Any:
        return True, "any"
    if origin in (typing.Union, types.UnionType):
        results = [_accepts(value, a) for a in args]
        return any(ok for ok, _ in results), " or ".join(word for _, word in results)
    if origin is typing.Literal:
        return value in args, "one of " + ", ".join(repr(a) for a in args)
    if hint is type(None):
        return value is None, "null"
    if hint is bool:
        return isinstance(value, bool), "bool"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), "int"
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "float"
    if hint is str:
        return isinstance(value, str), "str"
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, (list, tuple)), "list"
    if origin is dict or hint is dict:
        return isinstance(value, dict), "dict"
    return True, getattr(hint, "__name__", str(hint))


def _range_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` (of the right type) should be, if a :class:`~alignbench.ranges.Range` in
    ``hint`` (``Annotated``, possibly in a union) excludes it; else None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        fitting = [a for a in args if _accepts(value, a)[0]]
        problems = [_range_problem(value, a) for a in fitting]
        if any(p is None for p in problems):
            return None
        words = " or ".join(p for p in problems if p) or None
        if words and any(a is type(None) for a in args):
            words += " (or null)"
        return words
    if origin is typing.Annotated:
        ranges = [m for m in args[1:] if isinstance(m, Range)]
        bad = [r for r in ranges if value not in r]
        if bad:
            base = _accepts(value, args[0])[1]
            before = [r.words for r in bad if not r.words.startswith(("in ", "equal"))]
            after = [r.words for r in bad if r.words.startswith(("in ", "equal"))]
            phrase = " ".join([" and ".join(before), base, " and ".join(after)]).strip().replace("  ", " ")
            return ("an " if phrase[0] in "aeiou" else "a ") + phrase
    return None


def _constructor_params(cls: Any) -> tuple[dict[str, Any], set[str] | None]:
    """The annotated parameters of ``cls``'s constructor and of the base constructors it passes
    ``**kwargs`` on to (nearest first), and the keyword arguments it takes in all (None when
    ``**kwargs`` reach ``object`` or a callable's own ``**kwargs``: any key goes)."""
    hints: dict[str, Any] = {}
    names: set[str] = set()
    owners = [c for c in cls.__mro__ if "__init__" in vars(c)] if inspect.isclass(cls) else [cls]
    for owner in owners:
        init = owner.__init__ if inspect.isclass(owner) else owner
        if init is object.__init__:
            return hints, None
        try:
            found = typing.get_type_hints(init, include_extras=True)
        except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check there
            found = {}
        params = inspect.signature(init).parameters
        for name, param in params.items():
            if name in found and name not in hints:
                hints[name] = found[name]
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name != "self":
                names.add(name)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return hints, names
    return hints, None


def _import_target(target: str, prefix: str) -> Any:
    """The class or callable ``target`` names; :class:`ConfigError` for ``<prefix>._target_`` if
    it cannot be imported."""
    try:
        return _locate(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{prefix}._target_: cannot import {target!r} ({type(err).__name__}: {err}); "
                          "is its package installed or on PYTHONPATH?") from None


def check_arguments(target: str, kwargs: dict[str, Any], prefix: str) -> None:
    """Check ``kwargs`` against the annotated parameters of ``target``'s constructor: their
    types, and the ranges they state (:mod:`alignbench.ranges`)."""
    cls = _import_target(target, prefix)
    hints, options = _constructor_params(cls)
    name = getattr(cls, "__name__", target)
    for key, value in kwargs.items():
        if options is not None and not key.startswith("_") and key not in options:
            raise ConfigError(f"{prefix}.{key} is not an option of {name}; its options: {', '.join(sorted(options))}")
        if key.startswith("_") or key not in hints:
            continue
        ok, expected = _accepts(value, hints[key])
        if not ok:
            raise ConfigError(f"{prefix}.{key}={value!r} is not valid: {name} expects {expected}")
        problem = _range_problem(value, hints[key])
        if problem:
            raise ConfigError(f"{prefix}.{key} must be {problem}, got {value!r}")


def check_analysis(task: str, analysis: dict[str, Any]) -> None:
    """The ``analysis`` settings against the parameters of the task's analysis (checked before
    training, so a bad key never fails a run after it has trained)."""
    from ..analysis import TASK_ANALYSES

    hooks = TASK_ANALYSES.get(task)
    if hooks is None:
        return
    settings = {k: v for k, v in analysis.items() if k != "enabled"}
    check_arguments(f"{hooks.measure.__module__}.{hooks.measure.__name__}", settings, "analysis")


def check_trainer(trainer: dict[str, Any]) -> None:
    """Values Lightning's Trainer would take but that train nothing (or run forever): a run
    must train at least one epoch on at least one batch."""
    epochs = trainer.get("max_epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < 1:
        raise ConfigError(f"trainer.max_epochs must be a positive int, got {epochs!r} (a run must train)")
    floor = trainer.get("min_epochs")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int) or floor < 1):
        raise ConfigError(f"trainer.min_epochs must be a positive int (or null), got {floor!r}")
    if floor is not None and isinstance(epochs, int) and floor > epochs:
        raise ConfigError(f"trainer.min_epochs must be <= trainer.max_epochs={epochs}, got {floor!r}")
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and not limit > 0:
        raise ConfigError(f"trainer.limit_train_batches must be > 0 (a fraction in (0, 1] or a count), "
                          f"got {limit!r} (a run must train)")


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is not valid: expected int")
    if seed not in SEED:
        raise ConfigError(f"seed must be an int {SEED.words}, got {seed!r}")


def check_score_target(target: str) -> None:
    """:class:`ConfigError` unless ``target`` (``score._target_``) names an importable class."""
    _import_target(target, "score")


def compose_run(overrides: list[str]):
    """The composed training config of ``overrides`` (without Hydra's own node)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def first_line(err: BaseException) -> str:
    """One line from a (possibly wrapped) exception; Hydra's "available options" become
    "valid choices"."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    full_key, parent = getattr(root, "full_key", None), getattr(root, "parent_node", None)
    if full_key and parent is not None and "not in struct" in str(root):
        keys = ", ".join(sorted(str(k) for k in parent.keys()))
        return f"unknown key {full_key!r} (add a new key with +{full_key}=...); valid keys there: {keys}"
    text = str(root).strip() or type(root).__name__
    head = text.splitlines()[0]
    options = re.findall(r"^\t(\S+)$", text, flags=re.M)
    if "Could not find" in head and options:
        head = f"{head}; valid choices: {', '.join(options)}"
    return head


def check_run(overrides: list[str], build_data: bool = True) -> None:
    """Raise :class:`ConfigError` for the first problem of ``alignbench train overrides``
    (composed once, then :func:`check_config`)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose_run(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(first_line(err)) from None
    check_config(cfg, build_data)


def check_config(cfg, build_data: bool = True) -> None:
    """Raise :class:`ConfigError` for the first problem of a composed training config: ranges
    and types of every constructor's arguments, keys a constructor does not take, and (with
    ``build_data``) whether its data module can be built."""
    from hydra.errors import HydraException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .build import data_config

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(first_line(err)) from None
    check_seed(resolved.get("seed"))
    check_trainer(resolved["trainer"])
    check_arguments(resolved["trainer"]["_target_"], resolved["trainer"], "trainer")
    score = {k: v for k, v in resolved["score"].items() if k not in ("q_dim", "k_dim")}
    check_arguments(score["_target_"], score, "score")
    glimpses = resolved["model"].get("glimpses")
    if "glimpses" in score and glimpses is not None and score["glimpses"] != glimpses:
        raise ConfigError(f"score.glimpses must equal model.glimpses={glimpses!r} (one map per glimpse for every "
                          f"score; it follows model.glimpses unless set), got {score['glimpses']!r}")
    check_arguments(resolved["model"]["_target_"], resolved["model"], "model")
    if cfg.task.name not in cfg.data.tasks:
        raise ConfigError(f"data {cfg.data.name!r} has no {cfg.task.name!r} view; it supports: "
                          f"{', '.join(cfg.data.tasks)}")
    data_cfg = data_config(resolved["data"], cfg.task.name)
    check_arguments(data_cfg["_target_"], data_cfg, "data")
    check_analysis(cfg.task.name, resolved.get("analysis") or {})
    check_arguments("alignbench.run.train.early_stopping_settings", resolved.get("early_stopping") or {},
                    "early_stopping")
    if build_data:
        try:
            instantiate(data_cfg, seed=int(cfg.seed), _convert_="all")
        except Exception as err:  # noqa: BLE001 - reported as one line
            raise ConfigError(first_line(err)) from None


# Hydra flags whose next word is their value
HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun"}


def search_path_of(overrides: list[str]) -> list[str]:
    """Directories given by a ``hydra.searchpath=[…]`` override (file:// or plain paths)."""
    dirs: list[str] = []
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key == "hydra.searchpath":
            for part in value.strip("[]").split(","):
                part = part.strip().strip("'\"")
                if part.startswith("pkg://"):
                    continue
                dirs.append(part[len("file://"):] if part.startswith("file://") else part)
    return dirs


def validate_overrides(overrides: list[str]) -> None:
    """Check config-group choices (also inside sweeps) before Hydra starts.

    Raises :class:`ConfigError` naming the bad value and the valid choices.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    search_path = search_path_of(overrides)
    plain: list[str] = []
    skip = False
    for item in overrides:
        if skip:
            skip = False
        elif item in HYDRA_VALUE_FLAGS:
            skip = True  # the next word is the flag's value, not an override
        elif not item.startswith(("hydra.searchpath", "-")):
            plain.append(item)
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
    except HydraException as err:
        raise ConfigError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    for override in parsed:
        group = override.key_or_group
        if group not in GROUPS or override.is_delete():
            continue
        valid = group_options(group, search_path)
        if override.is_sweep_override():
            if type(override.value()).__name__ == "Glob":
                continue
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        for value in values:
            if value not in valid and not (group == "preset" and value == "null"):
                raise ConfigError(f"unknown {group} {value!r}; valid choices: {', '.join(valid)}")


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``a=1,2`` → ``a=1``; glob sweeps left out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = [o for o in overrides if not o.startswith("-")]
    out = []
    for text, override in zip(plain, OverridesParser.create().parse_overrides(plain)):
        if not override.is_sweep_override():
            out.append(text)
        elif type(override.value()).__name__ != "Glob":
            prefix = "+" if override.is_add() else ""
            out.append(f"{prefix}{override.key_or_group}={next(iter(override.sweep_string_iterator()))}")
    return out
