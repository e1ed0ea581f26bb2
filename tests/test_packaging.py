"""The package as it is shipped: built sdist and wheel, metadata, extras, and what it imports.

The distributions are built once per module from a copy of the source tree (so the checkout is
left untouched), with the build front end and setuptools of the test environment: no network.
"""

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import pipecat_audio_capture

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "pipecat_audio_capture"
DIST_NAME = "pipecat-audio-capture"
DIST_INFO = f"pipecat_audio_capture-{pipecat_audio_capture.__version__}.dist-info"
# Not part of a source tree: environments, caches, build output and recordings of local runs.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "recordings",
    "node_modules",
)


@dataclass
class Built:
    """The output of one build: its sdist, its wheel and what the build printed."""

    sdist: Path
    wheel: Path
    log: str

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return set(wheel.namelist())

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.read(name).decode()

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as sdist:
            # Names without the leading "pipecat_audio_capture-VERSION/".
            return {name.partition("/")[2] for name in sdist.getnames()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    out = work / "dist"
    # Byte-compiling is what an ordinary build does; an inherited PYTHONDONTWRITEBYTECODE only
    # adds a notice about skipping it.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist=sdist, wheel=wheel, log=log)


def test_building_sdist_and_wheel_prints_no_warning(built: Built) -> None:
    warnings = [line for line in built.log.splitlines() if "warn" in line.lower()]
    assert warnings == []


def test_wheel_ships_every_data_file_of_the_package(built: Built) -> None:
    names = built.wheel_names()
    data_files = [
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    ]
    assert data_files, "the package holds no data files"
    assert {
        "pipecat_audio_capture/py.typed",
        "pipecat_audio_capture/migrations/sqlite/0001_segments_and_transcripts.sql",
        "pipecat_audio_capture/migrations/postgres/0001_segments_and_transcripts.sql",
        "pipecat_audio_capture/web/static/review.js",
        "pipecat_audio_capture/web/static/review.css",
    } <= names
    assert [name for name in data_files if name not in names] == []
    assert any(name.startswith("pipecat_audio_capture/demo/assets/") for name in names)


def test_wheel_holds_only_the_package_and_no_dev_only_module(built: Built) -> None:
    names = built.wheel_names()
    top_levels = {name.split("/")[0] for name in names}
    assert top_levels == {"pipecat_audio_capture", DIST_INFO}
    modules = {name for name in names if name.endswith(".py")}
    source_modules = {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules == source_modules
    # The asset renderer needs espeak-ng and SoX: a maintainer tool, kept in scripts/.
    assert not any("render" in name and "assets" in name for name in modules)


def test_wheel_metadata_declares_spdx_license_urls_and_real_extras_only(built: Built) -> None:
    names = built.wheel_names()
    assert f"{DIST_INFO}/licenses/LICENSE" in names
    metadata = built.wheel_text(f"{DIST_INFO}/METADATA")
    headers = [line.partition(": ") for line in metadata.split("\n\n")[0].splitlines()]
    assert ("License-Expression", ": ", "BSD-2-Clause") in headers
    assert not any(name == "License" for name, _, _ in headers)
    urls = [value for name, _, value in headers if name == "Project-URL"]
    assert any(url.startswith("Repository, https://github.com/") for url in urls)
    extras = sorted(value for name, _, value in headers if name == "Provides-Extra")
    assert extras == ["gcs", "postgres", "s3", "test"]


def test_license_file_is_bsd_2_clause_of_the_contributors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 2-Clause License")
    assert "pipecat-audio-capture contributors" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-2-Clause"
    assert project["license-files"] == ["LICENSE"]


def test_sdist_holds_the_examples_tests_and_license_the_test_suite_needs(built: Built) -> None:
    names = built.sdist_names()
    assert {
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "examples/production_bot.py",
        "examples/offline_demo.py",
        "tests/conftest.py",
        "tests/support/__init__.py",
        "tests/support/index.py",
        "tests/test_production_bot_example.py",
        "tests/test_readme.py",
        "scripts/render_demo_assets.py",
    } <= names
    assert not any("__pycache__" in name for name in names)


def test_version_is_the_installed_distributions_version() -> None:
    assert pipecat_audio_capture.__version__ == importlib.metadata.version(DIST_NAME)
    assert "__version__" in pipecat_audio_capture.__all__


def test_wheel_version_is_the_package_version(built: Built) -> None:
    version = pipecat_audio_capture.__version__
    assert built.wheel.name.startswith(f"pipecat_audio_capture-{version}-")


def _import_with_modules_refused(module: str, refused: tuple[str, ...]) -> str:
    """Import ``module`` in a fresh interpreter whose import system refuses ``refused`` (and
    their submodules), as if they were not installed; return what the import raised."""
    script = textwrap.dedent(
        f"""
        import importlib.abc
        import sys

        REFUSED = {refused!r}

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == refused or name.startswith(refused + ".") for refused in REFUSED):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Refuse())
        for name in list(sys.modules):
            if any(name == refused or name.startswith(refused + ".") for refused in REFUSED):
                del sys.modules[name]
        try:
            import {module}
        except ImportError as exc:
            from pipecat_audio_capture.errors import AudioCaptureError
            print(type(exc).__name__, isinstance(exc, AudioCaptureError))
            print(exc)
        else:
            print("imported")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("module", "refused", "extra"),
    [
        (
            "pipecat_audio_capture.storage.gcs",
            ("google_crc32c", "google.cloud", "google.api_core", "google.auth"),
            "gcs",
        ),
        ("pipecat_audio_capture.storage.postgres", ("psycopg", "psycopg_pool"), "postgres"),
        ("pipecat_audio_capture.storage.s3", ("boto3", "botocore"), "s3"),
    ],
)
def test_backend_without_its_extra_fails_with_the_pip_line_that_installs_it(
    module: str, refused: tuple[str, ...], extra: str
) -> None:
    kind, message = _import_with_modules_refused(module, refused).splitlines()
    assert kind == "MissingExtraError True"
    assert message.endswith(f"pip install 'pipecat-audio-capture[{extra}]'")


def test_package_imports_without_the_optional_extras() -> None:
    refused = ("google_crc32c", "google.cloud", "psycopg", "psycopg_pool", "boto3", "botocore")
    assert _import_with_modules_refused("pipecat_audio_capture", refused).strip() == "imported"


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` statement or an ``import_module``/``__import__`` call with a
    literal name brings in."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", None))
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_no_module_of_the_package_imports_the_stdlib_wave_module() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE_DIR.rglob("*.py")
        if any(
            name.split(".")[0] == "wave"
            for name in _imported_modules(ast.parse(path.read_text(), str(path)))
        )
    }
    assert offenders == set()


def test_the_wave_check_sees_every_way_of_importing_it() -> None:
    sources = [
        "import wave",
        "import wave as w",
        "from wave import open",
        "import importlib\nimportlib.import_module('wave')",
        "__import__('wave')",
    ]
    for source in sources:
        assert "wave" in _imported_modules(ast.parse(source)), source
