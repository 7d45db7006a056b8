import os
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
USER_PKG = TESTS / "user_pkg"
USER_CONF = USER_PKG / "user_conf"

# Tests never touch the user's cache or output folders.
_SCRATCH = Path(tempfile.mkdtemp(prefix="alignbench-tests-"))
os.environ.setdefault("ALIGNBENCH_CACHE", str(_SCRATCH / "cache"))
os.environ.setdefault("ALIGNBENCH_OUTPUT", str(_SCRATCH / "outputs"))
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def user_pkg_on_path(monkeypatch):
    """Put the fixture user package (tests/user_pkg) on sys.path, as a user's install would."""
    monkeypatch.syspath_prepend(str(USER_PKG))
    return USER_PKG
