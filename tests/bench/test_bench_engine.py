"""bench/engine.py runs on its own (no Django settings) and ends with its RESULT line."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_engine_benchmark_ends_with_the_result_line(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "engine.py"), "--calls", "20"],
        cwd=tmp_path,  # not the repo root: the script finds the engine itself
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert len(lines) > 1
    assert re.fullmatch(r"RESULT engine ratio=\d+\.\d{2} calls=20", lines[-1])
