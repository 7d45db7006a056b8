"""Package list for setuptools (everything else is in pyproject.toml).

Every package under ``alignbench/`` is found by discovery, so a new subpackage cannot be
left out of a wheel; ``conf/`` and ``experiments/`` (the configs only: no scripts or
results) live at the top level of the repository and ship as ``alignbench.conf`` and
``alignbench.experiments`` (see ``package-dir`` in pyproject.toml).
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["alignbench", "alignbench.*"]) + ["alignbench.conf", "alignbench.experiments"])
