"""The command line's basics: --version, `python -m openvpc`, examples from any directory."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openvpc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"openvpc {version('openvpc')}"


def test_examples_are_found_from_any_directory(tmp_path: Path) -> None:
    done = run("validate", "examples/two-tenants.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "lab two-tenants is valid" in done.stdout
    missing = run("validate", "examples/no-such.yaml", cwd=tmp_path)
    assert missing.returncode != 0
