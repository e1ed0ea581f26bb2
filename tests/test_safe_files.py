"""Opening a recording under its root without following a link, and creating only new files."""

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pipecat_audio_capture.errors import UnsafePathError
from pipecat_audio_capture.safe_files import (
    copy_descriptor,
    create_new_file,
    open_folder,
    open_regular_under,
)

SECRET = b"TOP SECRET: not a recording"
WAV = b"RIFF....WAVEfmt " + bytes(range(256)) * 8


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A recordings root holding ``session/segment.wav``, next to ``secret.txt`` outside it."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "segment.wav").write_bytes(SECRET)
    folder = tmp_path / "recordings" / "session"
    folder.mkdir(parents=True)
    (folder / "segment.wav").write_bytes(WAV)
    return tmp_path / "recordings"


def read_all(fd: int) -> bytes:
    try:
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)


def test_a_regular_file_under_the_root_is_opened_and_read(root: Path) -> None:
    assert read_all(open_regular_under(root, root / "session" / "segment.wav")) == WAV


def test_the_root_itself_may_be_a_symlink_as_the_user_configured_it(
    root: Path, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)

    assert read_all(open_regular_under(alias, root / "session" / "segment.wav")) == WAV


def _symlink_file(root: Path, tmp_path: Path) -> Path:
    target = root / "session" / "segment.wav"
    target.unlink()
    target.symlink_to(tmp_path / "secret.txt")
    return target


def _symlink_folder(root: Path, tmp_path: Path) -> Path:
    (root / "linked").symlink_to(tmp_path / "outside")
    return root / "linked" / "segment.wav"


def _hard_link(root: Path, tmp_path: Path) -> Path:
    target = root / "session" / "other.wav"
    os.link(tmp_path / "secret.txt", target)
    return target


def _fifo(root: Path, tmp_path: Path) -> Path:
    target = root / "session" / "fifo.wav"
    os.mkfifo(target)
    return target


def _folder(root: Path, tmp_path: Path) -> Path:
    return root / "session"


def _dot_dot(root: Path, tmp_path: Path) -> Path:
    return root / "session" / ".." / ".." / "secret.txt"


def _outside(root: Path, tmp_path: Path) -> Path:
    return tmp_path / "secret.txt"


def _relative(root: Path, tmp_path: Path) -> Path:
    return Path("session/segment.wav")


def _nul(root: Path, tmp_path: Path) -> Path:
    return root / "session" / "segment.wav\x00.txt"


@pytest.mark.parametrize(
    "make",
    [
        _symlink_file,
        _symlink_folder,
        _hard_link,
        _fifo,
        _folder,
        _dot_dot,
        _outside,
        _relative,
        _nul,
    ],
)
def test_anything_but_a_regular_file_with_one_link_reached_without_a_link_is_refused(
    root: Path, tmp_path: Path, make: Callable[[Path, Path], Path]
) -> None:
    path = make(root, tmp_path)
    opened: list[int] = []
    # A FIFO opened for reading without O_NONBLOCK would wait for a writer forever.
    worker = threading.Thread(target=lambda: _try_open(root, path, opened), daemon=True)
    worker.start()
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert opened == [-1]


def _try_open(root: Path, path: Path, opened: list[int]) -> None:
    try:
        opened.append(open_regular_under(root, path))
    except UnsafePathError:
        opened.append(-1)


def test_a_missing_file_is_not_found(root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_regular_under(root, root / "session" / "gone.wav")


def test_a_new_file_is_created_and_an_existing_name_never_written_through(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("setting = 1\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "to-victim.json").symlink_to(victim)
    (out / "dangling.json").symlink_to(tmp_path / "nothing-yet")
    (out / "taken.json").write_text("mine\n")
    folder = open_folder(out)
    try:
        for name in ("to-victim.json", "dangling.json", "taken.json"):
            with pytest.raises(FileExistsError):
                create_new_file(folder, name)
        fd = create_new_file(folder, "new.json")
        os.write(fd, b"{}\n")
        os.close(fd)
    finally:
        os.close(folder)

    assert victim.read_text() == "setting = 1\n"
    assert not (tmp_path / "nothing-yet").exists()
    assert (out / "taken.json").read_text() == "mine\n"
    assert (out / "new.json").read_bytes() == b"{}\n"


def test_a_copy_holds_every_byte_of_a_file_larger_than_one_chunk(root: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 123)
    (root / "session" / "big.wav").write_bytes(big)
    source = open_regular_under(root, root / "session" / "big.wav")
    folder = open_folder(root)
    target = create_new_file(folder, "copy.wav")
    try:
        copied = copy_descriptor(source, target)
    finally:
        for fd in (source, target, folder):
            os.close(fd)

    assert copied == len(big)
    assert (root / "copy.wav").read_bytes() == big
