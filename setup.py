"""Package list for setuptools (everything else is in pyproject.toml).

Every package under ``alignbench/`` is found by discovery, so a new subpackage cannot be
left out of a wheel; ``conf/`` and ``experiments/`` (the configs only: no scripts or
results) live at the top level of the repository and ship as ``alignbench.conf`` and
``alignbench.experiments`` (see ``package-dir`` in pyproject.toml).
"""

import json
import subprocess
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CODE_PATHS = ("alignbench", "conf", ":(glob)experiments/*.yaml", "pyproject.toml", "setup.py")  # as alignbench.run.record


class BuildWithCommit(build_py):
    """Also writes ``alignbench/BUILD_INFO.json``: the git commit the package is built from
    (and whether its code differed from it), so the runs of a wheel install record where
    their code comes from (``code_version`` in ``run.json``). Nothing is written outside git."""

    def run(self) -> None:
        super().run()
        try:
            git = ["git", "-C", str(ROOT)]
            commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
            changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                                     capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return
        if commit and not self.editable_mode:
            target = Path(self.build_lib) / "alignbench" / "BUILD_INFO.json"
            target.write_text(json.dumps({"commit": commit, "dirty": bool(changed.strip())}) + "\n", encoding="utf-8")


setup(packages=find_packages(include=["alignbench", "alignbench.*"]) + ["alignbench.conf", "alignbench.experiments"],
      cmdclass={"build_py": BuildWithCommit})
