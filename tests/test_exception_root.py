"""Every exception the package raises on purpose derives from ``AudioCaptureError``.

Each module of the package is parsed, and every ``raise X(...)`` or ``raise X`` whose ``X`` is a
class reachable from the module's globals must name a subclass of the root. A bare ``raise`` and
``raise exc`` of a caught or built exception are re-raises, not new failures, and are skipped.
``raise make_error(...)`` names the class its factory's return annotation gives. Classes that
Python or a library requires (``AttributeError`` from a module's ``__getattr__``, argparse's
``ArgumentTypeError``) are subclassed together with the root; the few raised on purpose that are
not failures of the package are listed in ``DELIBERATE``.
"""

import ast
import builtins
import importlib
import typing
from pathlib import Path

import pytest
from aiohttp import web
from botocore.exceptions import IncompleteReadError

import pipecat_audio_capture
import pipecat_audio_capture.errors
from pipecat_audio_capture import AudioCaptureError
from pipecat_audio_capture.errors import UnknownAttributeError

PACKAGE = Path(pipecat_audio_capture.__file__).parent

# The response an aiohttp handler sends (aiohttp wants it raised), the exit status of the command
# line (as argparse exits), and a short S3 download raised inside the client call so that the S3
# backend classifies it with botocore's own errors (transient, retried).
DELIBERATE: tuple[type[BaseException], ...] = (web.HTTPException, SystemExit, IncompleteReadError)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dotted(node: ast.expr) -> str | None:
    """``a.b.C`` of a Name or an Attribute chain; None for anything else (a call, a subscript)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def resolve(namespace: dict[str, object], name: str) -> object | None:
    head, *rest = name.split(".")
    value = namespace.get(head, getattr(builtins, head, None))
    for attr in rest:
        value = getattr(value, attr, None)
    return value


def raised_classes(source: str, namespace: dict[str, object]) -> list[tuple[int, str, object]]:
    """``(line, name, object)`` of each class ``source`` raises by name, re-raises left out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = dotted(target)
        if name is None:
            continue
        value = resolve(namespace, name)
        if isinstance(node.exc, ast.Call) and callable(value) and not isinstance(value, type):
            value = typing.get_type_hints(value).get("return")
        if isinstance(node.exc, ast.Call) or isinstance(value, type):
            found.append((node.lineno, name, value))
    return sorted(found, key=lambda item: item[0])


def not_from_the_root(source: str, namespace: dict[str, object]) -> list[str]:
    return [
        f"{line}: raise {name}"
        for line, name, value in raised_classes(source, namespace)
        if not (isinstance(value, type) and issubclass(value, (AudioCaptureError, *DELIBERATE)))
    ]


def test_every_exception_the_package_raises_derives_from_audio_capture_error() -> None:
    offenders = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        namespace = vars(importlib.import_module(module_name(path)))
        checked += len(raised_classes(source, namespace))
        offenders += [
            f"{path.relative_to(PACKAGE)}:{where}" for where in not_from_the_root(source, namespace)
        ]
    assert checked > 100
    assert offenders == []


def test_the_check_flags_a_builtin_and_skips_re_raises() -> None:
    source = """
def f(flag):
    try:
        if flag:
            raise ValueError("flag")
        raise errors.InvalidIdError("id")
    except errors.AudioCaptureError as exc:
        if flag:
            raise
        raise exc
    if flag:
        raise refused()
    raise KeyError
"""

    def refused() -> KeyError:
        return KeyError("refused")

    namespace: dict[str, object] = {"errors": pipecat_audio_capture.errors, "refused": refused}
    assert not_from_the_root(source, namespace) == [
        "5: raise ValueError",
        "12: raise refused",
        "13: raise KeyError",
    ]


def test_an_unknown_name_of_the_package_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError) as caught:
        _ = pipecat_audio_capture.NoSuchThing  # type: ignore[attr-defined]
    assert isinstance(caught.value, UnknownAttributeError)
    assert not hasattr(pipecat_audio_capture, "NoSuchThing")
