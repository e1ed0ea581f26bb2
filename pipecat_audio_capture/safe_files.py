"""Crash-safe, symlink-safe file operations under a root folder (blocking; run in a thread).

A file is written under a temporary name in its final folder, fsynced, renamed over the final
name, and the folder is fsynced: after a crash the final name holds either nothing or the whole
file. Folders below a root are used only if they are real folders: a symlink there could send a
write, read or delete outside the root.

A file under a root is read through one descriptor, opened step by step from the root with
``O_NOFOLLOW`` (:func:`open_regular_under`) and checked on that descriptor, so swapping a file or
folder for a link between a check and the read cannot redirect it. Files handed out of the
package (an export) are created new, never opened through an existing name
(:func:`create_new_file`).
"""

import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from loguru import logger

from pipecat_audio_capture.errors import FolderGoneError, UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO planted under the root returns at once (and is then refused) instead
# of waiting for a writer; O_NOCTTY: a terminal device never becomes the controlling terminal.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
# What open() reports for a symlink under O_NOFOLLOW (ELOOP; EMLINK on FreeBSD) or for a file
# where a folder was expected.
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})
_COPY_CHUNK_BYTES = 1 << 20

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""The canonical UUID form, the only one ids take in file and folder names."""

TEMP_SUFFIX = ".partial"
"""Suffix of files being written; a file with it was never completed."""

_TEMP_NAME = re.compile(r"^\..+\.[^.]+" + re.escape(TEMP_SUFFIX) + r"$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`write_atomically`."""
    return _TEMP_NAME.match(name) is not None


def ensure_real_folder(root: Path, name: str) -> Path:
    """Return ``root / name``, creating it (and ``root``) when missing, if it is a real folder.

    ``root`` may be a symlink, as the caller resolved it. A folder created here is made durable
    by fsyncing ``root``.

    Args:
        root: An absolute, resolved folder.
        name: One path component (an id already checked to be a UUID).

    Raises:
        UnsafePathError: If ``root / name`` is a symlink or not a folder.
        OSError: If the folder cannot be created or inspected.
    """
    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    try:
        folder.mkdir()
    except FileExistsError:
        pass
    else:
        fsync_folder(root)
    if existing_real_folder(root, name) is None:
        raise FolderGoneError(f"{folder} vanished right after it was created")
    return folder


def existing_real_folder(root: Path, name: str) -> Path | None:
    """Return ``root / name`` if it is a real folder, None if it does not exist.

    Raises:
        UnsafePathError: If ``root / name`` is a symlink or not a folder.
    """
    folder = root / name
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(mode):
        raise UnsafePathError(f"{folder} is a symlink or not a folder; it is not used")
    return folder


def lstat_regular(path: Path) -> os.stat_result | None:
    """Return ``path``'s own status if it is a regular file, None if it does not exist.

    Raises:
        UnsafePathError: If ``path`` is a symlink, a folder or any other kind of file.
    """
    try:
        status = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise UnsafePathError(f"{path} is a symlink or not a regular file; it is not used")
    return status


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a symlink in its last component.

    Returns:
        The open file; the caller closes it.

    Raises:
        UnsafePathError: If ``path`` is a symlink or not a regular file.
        OSError: If it cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if path.is_symlink():
            raise UnsafePathError(f"{path} is a symlink; it is not read") from exc
        raise
    file = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise UnsafePathError(f"{path} is not a regular file; it is not read")
    return file


def read_regular(path: Path) -> bytes:
    """Read a regular file without following a symlink in its last component.

    Raises:
        UnsafePathError: If ``path`` is a symlink or not a regular file.
        OSError: If it cannot be read.
    """
    with open_regular(path) as file:
        return file.read()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename.

    The temporary file, ``.{stem}.{random}.partial`` in the same folder, is removed if the write
    fails; after a crash it stays behind for :func:`remove_stale_temp_files`.

    Raises:
        OSError: If the write, the fsync or the rename fails.
    """
    with open_atomically(path) as tmp:
        tmp.write(data)


@contextmanager
def open_atomically(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` when the block ends without an exception.

    The file is written as :func:`write_atomically` writes: fsynced, renamed over ``path``,
    folder fsynced; an exception in the block removes it and leaves ``path`` as it was.

    Raises:
        OSError: If the write, the fsync or the rename fails.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder entry is on disk.
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (created, renamed or removed files) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path, *, min_age_s: float) -> int:
    """Remove the temporary files in ``folder`` older than ``min_age_s``.

    Younger ones may belong to a live writer in another process sharing the folder.

    Returns:
        How many were removed.
    """
    cutoff = time.time() - min_age_s
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_temp_name(entry.name) or entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            Path(entry.path).unlink(missing_ok=True)
            logger.warning(f"removed {entry.path}, left by a write that never completed")
            removed += 1
    return removed


def real_subfolders(root: Path, name: re.Pattern[str]) -> list[Path]:
    """Return the real folders directly in ``root`` whose names match ``name``, sorted.

    Symlinks are skipped, so nothing outside ``root`` is visited. A missing root has none.
    """
    try:
        with os.scandir(root) as entries:
            return sorted(
                Path(entry.path)
                for entry in entries
                if name.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def open_regular_under(root: Path, path: Path) -> int:
    """Open ``path`` for reading if it is a regular file inside ``root``, reached without a link.

    ``root`` is resolved (it may be a symlink, as the user configured it). ``path`` must name a
    file below it lexically, without ``..``. The root is opened, then each folder below it and
    the file with ``O_NOFOLLOW`` relative to the folder before (``openat``), so no step follows a
    link, whatever is renamed meanwhile. The open descriptor is then checked: a regular file
    with exactly one link (a hard link can make any file of the same file system appear under
    the root), still inside the root. Read from the returned descriptor only, and close it.

    Args:
        root: The folder the file must be in.
        path: The absolute path of the file.

    Returns:
        A descriptor open for reading.

    Raises:
        UnsafePathError: If ``path`` is outside ``root``, has a link, a ``..`` or a non-folder on
            the way, or is not a regular file with one link.
        OSError: If it does not exist (``FileNotFoundError``) or cannot be opened.
    """
    base = root.expanduser().resolve()
    parts = _parts_below(base, path)
    fd = os.open(base, _FOLDER_FLAGS)
    for name in parts[:-1]:
        fd = _open_in(fd, name, _FOLDER_FLAGS | _NOFOLLOW, path)
    fd = _open_in(fd, parts[-1], _READ_FLAGS, path)
    try:
        _check_descriptor(fd, base, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_folder(folder: Path) -> int:
    """Open a folder to create files in with :func:`create_new_file`.

    Links in ``folder`` itself are followed: the caller names it.

    Raises:
        OSError: If it does not exist or is not a folder.
    """
    return os.open(folder, _FOLDER_FLAGS)


def create_new_file(folder_fd: int, name: str) -> int:
    """Create ``name`` in an open folder and return it open for writing.

    Only a new file is created: an existing name, a symlink included (even a dangling one), is
    refused rather than followed or replaced.

    Args:
        folder_fd: A folder descriptor from :func:`open_folder`.
        name: One path component.

    Raises:
        FileExistsError: If ``name`` exists in the folder.
        OSError: If it cannot be created.
    """
    return os.open(name, _CREATE_FLAGS, 0o666, dir_fd=folder_fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_descriptor(source_fd: int, target_fd: int) -> int:
    """Copy what ``source_fd`` holds from its start to ``target_fd``; return the bytes copied."""
    copied = 0
    while chunk := os.pread(source_fd, _COPY_CHUNK_BYTES, copied):
        write_all(target_fd, chunk)
        copied += len(chunk)
    return copied


def _parts_below(base: Path, path: Path) -> tuple[str, ...]:
    """The components of ``path`` below ``base``, compared as text (nothing is resolved)."""
    if not path.is_absolute():
        raise UnsafePathError(f"{path} is not an absolute path; it is not opened")
    try:
        parts = path.relative_to(base).parts
    except ValueError as exc:
        raise UnsafePathError(f"{path} is outside the recordings folder {base}") from exc
    if not parts or any(part == ".." or "\x00" in part for part in parts):
        raise UnsafePathError(f"{path} does not name a file below {base}; it is not opened")
    return parts


def _open_in(folder_fd: int, name: str, flags: int, path: Path) -> int:
    """Open ``name`` relative to ``folder_fd``, which is closed whatever happens."""
    try:
        return os.open(name, flags, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise UnsafePathError(
                f"{path}: {name} is a symlink or not a folder on the way; it is not opened"
            ) from exc
        raise
    finally:
        os.close(folder_fd)


def _check_descriptor(fd: int, base: Path, path: Path) -> None:
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise UnsafePathError(f"{path} is not a regular file; it is not read")
    if status.st_nlink != 1:
        raise UnsafePathError(
            f"{path} has {status.st_nlink} links: a hard link may be a file from elsewhere; "
            "it is not read"
        )
    opened = _descriptor_path(fd)
    if opened is not None and not opened.is_relative_to(base):
        raise UnsafePathError(f"{path} was moved out of {base} while it was opened")


def _descriptor_path(fd: int) -> Path | None:
    """Where an open file is now, when the system tells (Linux's ``/proc``), else None."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None
