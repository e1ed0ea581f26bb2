"""The package's layers point down: the review page and the command line share the index-reading
modules and import nothing of each other (the ``serve`` command being the one way in); file
storage and index storage are separate roles."""

import ast
from pathlib import Path

import pipecat_audio_capture
from pipecat_audio_capture import (
    AudioStorage,
    CompositeAudioStorage,
    MetadataLog,
    MetadataStorage,
    SegmentStorage,
)

PACKAGE = Path(pipecat_audio_capture.__file__).parent
SHARED_READERS = ("index_access.py", "display.py")


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def importers_of(package: str, files: list[Path]) -> dict[str, set[str]]:
    """The files among ``files`` that import ``package`` or one of its modules."""
    found: dict[str, set[str]] = {}
    for path in files:
        hits = {
            name
            for name in imported_modules(path)
            if name == package or name.startswith(package + ".")
        }
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    return found


def test_the_review_page_imports_nothing_of_the_command_line() -> None:
    web = sorted((PACKAGE / "web").rglob("*.py"))
    assert web
    assert importers_of("pipecat_audio_capture.cli", web) == {}


def test_the_command_line_reaches_the_review_page_only_through_serve() -> None:
    cli = sorted((PACKAGE / "cli").rglob("*.py"))
    assert importers_of("pipecat_audio_capture.web", cli).keys() == {"cli/serve.py"}


def test_the_shared_readers_import_neither_the_command_line_nor_the_review_page() -> None:
    shared = [PACKAGE / name for name in SHARED_READERS]
    assert importers_of("pipecat_audio_capture.cli", shared) == {}
    assert importers_of("pipecat_audio_capture.web", shared) == {}


def test_no_module_of_the_command_line_is_left_at_the_package_root() -> None:
    assert sorted(path.name for path in PACKAGE.glob("cli*.py")) == []


class FilesOnly:
    """A file backend and nothing else: no metadata sink to fake."""

    async def store_segment(self, *args: object, **kwargs: object) -> str:
        return "file:///x.wav"


def test_file_storage_and_index_storage_are_separate_protocols() -> None:
    assert isinstance(FilesOnly(), AudioStorage)
    assert not isinstance(FilesOnly(), MetadataStorage)
    assert not isinstance(MetadataLog(), AudioStorage)
    assert not issubclass(AudioStorage, MetadataStorage)


def test_a_composite_of_one_file_backend_and_one_index_backend_stores_whole_segments() -> None:
    composite = CompositeAudioStorage(files=FilesOnly(), metadata=MetadataLog())

    assert isinstance(composite, SegmentStorage)
    assert not isinstance(FilesOnly(), SegmentStorage)
