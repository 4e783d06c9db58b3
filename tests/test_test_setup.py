"""The test setup itself: a missing parity case skips (saying where it looked) outside CI and fails
under CI=true, through the one fixture in conftest.py."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ONE_PARITY_TEST = "tests/test_reference_prep.py::test_clip_pixel_values_parity"


def _run(tmp_path, ci: str | None):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MIMO_PARITY_DIR")}
    env["MIMO_PARITY_DIR"] = str(tmp_path / "no-cases-here")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", ONE_PARITY_TEST],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_missing_parity_case_skips_outside_ci_and_names_the_folder(tmp_path):
    out = _run(tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 skipped" in out.stdout and str(tmp_path / "no-cases-here") in out.stdout, out.stdout


def test_missing_parity_case_fails_under_ci(tmp_path):
    out = _run(tmp_path, "true")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "2 failed" in out.stdout and "CI=true" in out.stdout and "MIMO_PARITY_DIR" in out.stdout, out.stdout
