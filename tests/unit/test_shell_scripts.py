"""Every shell script of the repository parses (``bash -n``): a merge once left bench/run.sh without a
``fi``, so every benchmark mode failed before it started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in [*REPO.glob("*/*.sh"), *REPO.glob(".ci/run")] if "tests" not in p.parts)


def test_there_are_scripts_to_check():
    assert {"bench/run.sh", "scripts/test.sh", ".ci/run"} <= {str(p.relative_to(REPO)) for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_parses(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
