"""Every option's valid range is checked when the config is composed, before anything runs:
property-based over values of each option's type, in and out of range."""

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignbench.run.preflight import ConfigError, check_run

BASE = ["task=vqa", "preset=tiny"]
# option -> (extra overrides, value strategy, is the value valid?) -- an oracle written apart from the code's ranges
OPTIONS = {
    "seed": ([], st.integers(-10, 2**33), lambda v: 0 <= v < 2**32),
    "data.batch_size": ([], st.integers(-5, 4096), lambda v: v > 0),
    "data.train_scenes": ([], st.integers(-5, 10**5), lambda v: v > 0),
    "model.hidden_dim": ([], st.integers(-5, 512), lambda v: v > 0),
    "model.glimpses": (["score=dot"], st.integers(-3, 8), lambda v: v > 0),
    "model.lr": ([], st.floats(-1, 1, allow_nan=False), lambda v: v > 0),
    "model.weight_decay": ([], st.floats(-1, 1, allow_nan=False), lambda v: v >= 0),
    "model.dropout": ([], st.floats(-1, 2, allow_nan=False), lambda v: 0 <= v < 1),
    "trainer.max_epochs": ([], st.integers(-3, 50), lambda v: v > 0),
    "score.temperature": (["score=cosine"], st.floats(-20, 20, allow_nan=False), lambda v: v > 0),
    "score.glimpses": (["score=ban"], st.integers(-3, 4), lambda v: v == 2),  # must equal model.glimpses (2)
    "score.hidden_dim": (["score=additive"], st.integers(-3, 128), lambda v: v > 0),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(OPTIONS)).flatmap(lambda k: st.tuples(st.just(k), OPTIONS[k][1])))
def test_values_in_range_pass_and_out_of_range_are_one_line_naming_the_option(option_value):
    option, value = option_value
    extra, _, valid = OPTIONS[option]
    overrides = BASE + extra + [f"{option}={value!r}"]
    if valid(value):
        check_run(overrides)
    else:
        with pytest.raises(ConfigError) as err:
            check_run(overrides)
        message = str(err.value)
        assert "\n" not in message and option in message and repr(value) in message, message


TABLE = [  # the bad values a new user tried (issue tracker), each caught before any folder is made
    ("seed=-1", "seed must be an int in [0, 2**32 - 1], got -1"),
    ("data.batch_size=0", "data.batch_size must be a positive int, got 0"),
    ("model.hidden_dim=0", "model.hidden_dim must be a positive int, got 0"),
    ("model.lr=-1", "model.lr must be a positive float, got -1"),
    ("score=cosine score.temperature=-1", "score.temperature must be a positive float, got -1"),
    ("score=ban score.glimpses=0", "score.glimpses must be a positive int, got 0"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be a positive int, got 0"),
    ("+trainer.limit_train_batches=0", "trainer.limit_train_batches must be > 0"),
]


CASES = [("train", o, m) for o, m in TABLE] + [("compare", o, m) for o, m in TABLE if not o.startswith("score=")]


@pytest.mark.parametrize("command, overrides, message", CASES, ids=[f"{c} {o}" for c, o, _ in CASES])
def test_bad_values_exit_2_with_one_line_and_write_nothing(tmp_path, command, overrides, message):
    out = tmp_path / "out"
    env = {**os.environ, "ALIGNBENCH_OUTPUT": str(out), "ALIGNBENCH_CACHE": str(tmp_path / "cache")}
    if command == "train":
        args = ["train", "task=vqa", "preset=tiny", *overrides.split()]
    else:
        args = ["compare", "preset=smoke", "tasks=[vqa]", "scores=[dot]", f"out={out}", "--", *overrides.split()]
    result = subprocess.run([sys.executable, "-m", "alignbench", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignbench: error: ") and message in lines[0], result.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()
