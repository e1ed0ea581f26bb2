"""How to print a command line the user can paste into a fresh shell, from where they are."""

import os
import shlex
import shutil
import sys
from pathlib import Path

_MODULE = "pipecat_audio_capture"


def invocation(argv0: str | None = None, python: str | None = None, cwd: Path | None = None) -> str:
    """Return how this process's command is run again from ``cwd``, shell-quoted.

    Run as ``python -m pipecat_audio_capture``: that interpreter with ``-m``. Run as the console
    script: its path relative to ``cwd`` when it lies below (``.venv/bin/pipecat-audio-capture``
    from a repository root: a fresh shell has no activated virtual environment), else the bare
    name when ``PATH`` finds this very script, else its absolute path.

    Args:
        argv0: The program as started (``sys.argv[0]``).
        python: The interpreter (``sys.executable``).
        cwd: The folder the printed line is meant to be run from (the current one).
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    cwd = Path.cwd() if cwd is None else cwd
    if not argv0 or Path(argv0).name == "__main__.py":
        return f"{shlex.quote(_from(cwd, Path(python)))} -m {_MODULE}"
    script = Path(argv0)
    if script.is_absolute() and not script.is_relative_to(cwd):
        found = shutil.which(script.name)
        if found is not None and _same_file(Path(found), script):
            return shlex.quote(script.name)
    return shlex.quote(_from(cwd, script))


def _from(cwd: Path, path: Path) -> str:
    """Return ``path`` relative to ``cwd`` when it lies below it, else absolute."""
    absolute = path if path.is_absolute() else cwd / path
    if absolute.is_relative_to(cwd):
        relative = absolute.relative_to(cwd)
        return str(relative) if len(relative.parts) > 1 else f"./{relative}"
    return str(absolute)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
