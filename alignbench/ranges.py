"""Valid ranges of constructor arguments, stated on the signatures themselves.

A constructor annotates an argument as ``PositiveInt``, ``PositiveFloat``, ``NonNegativeFloat``
or ``DropoutRate`` (``typing.Annotated`` with a :class:`Range`); the command line checks every
configured value against these annotations before anything runs
(:mod:`alignbench.run.preflight`), so a bad value exits with one line naming the option, the value
and what is valid. Pure Python: any layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Range:
    """An interval of numbers: ``low``/``high`` (None = unbounded), each closed unless ``*_open``;
    ``words`` says it in a message ("positive")."""

    words: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value != value:  # NaN
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True


POSITIVE = Range("positive", low=0, low_open=True)
NON_NEGATIVE = Range("non-negative", low=0)
DROPOUT = Range("in [0, 1)", low=0, high=1, high_open=True)
SEED = Range("in [0, 2**32 - 1]", low=0, high=2**32 - 1)
ONE = Range("equal to 1", low=1, high=1)

PositiveInt = Annotated[int, POSITIVE]
PositiveFloat = Annotated[float, POSITIVE]
NonNegativeFloat = Annotated[float, NON_NEGATIVE]
DropoutRate = Annotated[float, DROPOUT]
One = Annotated[int, ONE]  # a setting that must stay 1 (e.g. one attention map per word in retrieval)
