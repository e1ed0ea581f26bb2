"""Measurements that need a fresh process: run a benchmark module and read the JSON it prints."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_child(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args...`` from the repository root; return its last stdout line.

    Raises:
        RuntimeError: If the child fails (its stderr's tail is in the message).
    """
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_result(result: dict[str, Any]) -> None:
    """The child's side: print the result as the one JSON line the parent reads."""
    print(json.dumps(result))
