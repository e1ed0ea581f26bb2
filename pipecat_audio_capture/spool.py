"""The local spool: where a recording waits, durably, when storage cannot take it.

Layout (see :mod:`pipecat_audio_capture.spool_format` for the files)::

    {spool_dir}/
      {session_id}/
        {segment_id}.segment              one line of JSON, then the WAV bytes
        {turn_id}.{role}.transcript       the transcript row as JSON
        {turn_id}.latency                 the bot turn's latency breakdown as JSON

Entries are written like recordings: a temporary file, fsync, rename, fsync of the folder, so an
entry is either whole or absent after a crash. All spool I/O runs on one thread of its own, not on
the shared worker threads that a hung storage call can hold, so spooling keeps working while
storage hangs; it also makes the size check and the write one step within the process.

Size policy: an entry that would take the folder past ``max_bytes`` is refused with
:class:`~pipecat_audio_capture.errors.SpoolFullError`; older entries are never evicted, since
they hold recordings already promised to be kept. Processes sharing a folder each check its
current size before writing, so together they can pass the cap by at most one entry each.
"""

import asyncio
import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import (
    FolderGoneError,
    InvalidArgumentError,
    SpoolEntryError,
    SpoolEntryGoneError,
    SpoolError,
    SpoolFullError,
    UnsafePathError,
)
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.records import PendingAudioSegment, TranscriptRecord, TurnLatencyRecord
from pipecat_audio_capture.safe_files import (
    CANONICAL_UUID,
    ensure_real_folder,
    existing_real_folder,
    is_temp_name,
    lstat_regular,
    read_regular,
    real_subfolders,
    remove_stale_temp_files,
    write_atomically,
)
from pipecat_audio_capture.spool_format import (
    LATENCY_NAME,
    SEGMENT_NAME,
    TRANSCRIPT_NAME,
    SpooledLatency,
    SpooledSegment,
    SpooledTranscript,
    decode_latency,
    decode_segment,
    decode_transcript,
    encode_latency,
    encode_segment,
    encode_transcript,
    latency_file_name,
    segment_file_name,
    transcript_file_name,
)
from pipecat_audio_capture.wav import encode_wav

T = TypeVar("T")

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-capture-spool")
"""The spool's own thread, shared by every spool of the process (started on first use)."""


@dataclass(frozen=True)
class SpoolScan:
    """What a spool folder holds.

    Parameters:
        segments: Segment entry files, by session then name.
        transcripts: Transcript entry files, by session then name.
        latencies: Latency entry files, by session then name.
        rejected: Files and folders that are not entries (foreign names, symlinks, folders
            inside a session). They are never read or removed by the package.
        temporary: Temporary files of entry writes in progress, or of crashed ones.
    """

    segments: list[Path]
    transcripts: list[Path]
    latencies: list[Path]
    rejected: list[Path]
    temporary: list[Path]


class Spool:
    """A folder of segments, transcript rows and latency rows waiting to be stored.

    :class:`~pipecat_audio_capture.SessionAudioCapture`,
    :class:`~pipecat_audio_capture.TranscriptRecorder` and
    :class:`~pipecat_audio_capture.LatencyRecorder` write to it when storage fails;
    :func:`~pipecat_audio_capture.replay.replay_spool` stores its entries later and removes them.
    Paths are built only from canonical UUIDs, and nothing below the root is followed if it is a
    symlink.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, max_bytes: int = defaults.SPOOL_MAX_BYTES
    ) -> None:
        """Initialize the spool; the folder is created on the first write.

        Args:
            root: The spool folder. It may itself be a symlink (resolved here).
            max_bytes: Largest total size of the folder's files.

        Raises:
            InvalidArgumentError: If ``max_bytes`` is negative.
        """
        if max_bytes < 0:
            raise InvalidArgumentError(f"max_bytes must not be negative, got {max_bytes}")
        self._root = Path(root).expanduser().resolve()
        self._max_bytes = max_bytes

    @property
    def root(self) -> Path:
        """The absolute spool folder."""
        return self._root

    @property
    def max_bytes(self) -> int:
        """The size cap."""
        return self._max_bytes

    async def put_segment(
        self, segment: PendingAudioSegment, *, reason: str, wav: bytes | None = None
    ) -> Path:
        """Spool a segment and return its entry's path once it is durable.

        Args:
            segment: The segment.
            reason: Why it is spooled, kept in the entry.
            wav: Its encoded WAV, if already at hand; encoded on the spool's thread otherwise.

        Raises:
            InvalidIdError: If an id is not a UUID.
            SpoolFullError: If the entry would take the folder past ``max_bytes``.
            SpoolError: If the entry cannot be encoded, would not read back (a format outside
                the limits, a malformed field: a replay would refuse it), or cannot be written.
            UnsafePathError: If the session's folder in the spool is a symlink.
        """
        session = require_uuid(segment.session_id, "session_id")
        name = segment_file_name(segment.segment_id)
        segment_id = name.removesuffix(".segment")

        def entry() -> bytes:
            data = wav
            if data is None:
                data = encode_wav(
                    segment.pcm,
                    segment.sample_rate,
                    segment.num_channels,
                    data_size=segment.pcm_bytes,
                )
            return encode_segment(segment, data, reason=reason, spooled_at=datetime.now(UTC))

        def check(data: bytes) -> object:
            return decode_segment(data, session_id=session, segment_id=segment_id)

        return await self._run(self._put, session, name, _readable(entry, check))

    async def put_transcript(self, record: TranscriptRecord, *, reason: str) -> Path:
        """Spool a transcript row (replacing a spooled one of the same turn and role).

        Raises:
            InvalidIdError: If an id is not a UUID.
            SpoolFullError: If the entry would take the folder past ``max_bytes``.
            SpoolError: If the entry would not read back (a replay would refuse it) or cannot be
                written.
            UnsafePathError: If the session's folder in the spool is a symlink.
        """
        session = require_uuid(record.session_id, "session_id")
        name = transcript_file_name(record.turn_id, record.role)
        turn_id = name.split(".", 1)[0]

        def entry() -> bytes:
            return encode_transcript(record, reason=reason, spooled_at=datetime.now(UTC))

        def check(data: bytes) -> object:
            return decode_transcript(data, session_id=session, turn_id=turn_id, role=record.role)

        return await self._run(self._put, session, name, _readable(entry, check))

    async def put_latency(self, record: TurnLatencyRecord, *, reason: str) -> Path:
        """Spool a bot turn's latency breakdown (replacing a spooled one of the same turn).

        Raises:
            InvalidIdError: If an id is not a UUID.
            SpoolFullError: If the entry would take the folder past ``max_bytes``.
            SpoolError: If the entry would not read back (a number JSON cannot hold, say) or
                cannot be written.
            UnsafePathError: If the session's folder in the spool is a symlink.
        """
        session = require_uuid(record.session_id, "session_id")
        name = latency_file_name(record.turn_id)
        turn_id = name.split(".", 1)[0]

        def entry() -> bytes:
            return encode_latency(record, reason=reason, spooled_at=datetime.now(UTC))

        def check(data: bytes) -> object:
            return decode_latency(data, session_id=session, turn_id=turn_id)

        return await self._run(self._put, session, name, _readable(entry, check))

    async def scan(self) -> SpoolScan:
        """List the entries, and what in the folder is not one.

        Raises:
            SpoolError: If the folder cannot be listed.
        """
        return await self._run(self._scan)

    async def read_segment(self, path: Path) -> SpooledSegment:
        """Read and check a segment entry listed by :meth:`scan`.

        Raises:
            SpoolEntryError: If it is not a valid entry (or not in this spool).
            SpoolEntryGoneError: If it was removed since the scan (another replay took it).
            SpoolError: If it cannot be read.
        """
        return await self._read_entry(path, SEGMENT_NAME, "segment", decode_segment)

    async def read_transcript(self, path: Path) -> SpooledTranscript:
        """Read and check a transcript entry listed by :meth:`scan`.

        Raises:
            SpoolEntryError: If it is not a valid entry (or not in this spool).
            SpoolEntryGoneError: If it was removed since the scan (another replay took it).
            SpoolError: If it cannot be read.
        """
        return await self._read_entry(path, TRANSCRIPT_NAME, "transcript", decode_transcript)

    async def read_latency(self, path: Path) -> SpooledLatency:
        """Read and check a latency entry listed by :meth:`scan`.

        Raises:
            SpoolEntryError: If it is not a valid entry (or not in this spool).
            SpoolError: If it cannot be read.
        """
        return await self._read_entry(path, LATENCY_NAME, "latency", decode_latency)

    async def remove(self, path: Path) -> None:
        """Remove an entry whose data is stored, and its session folder once empty.

        Raises:
            SpoolEntryError: If ``path`` is not an entry of this spool.
            SpoolError: If it cannot be removed.
        """
        session = self._session_of(path)
        if not _is_entry_name(path.name):
            raise SpoolEntryError(f"{path} is not named like a spool entry")
        await self._run(self._discard, session, path.name)

    async def delete_session(self, session_id: str) -> int:
        """Remove every entry of a session (its recordings are being deleted everywhere).

        Returns:
            How many entries were removed.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            SpoolError: If an entry cannot be removed, or the session folder is a symlink.
        """
        return await self._run(self._delete_session, require_uuid(session_id, "session_id"))

    async def count_session(self, session_id: str) -> int:
        """Return how many entries :meth:`delete_session` would remove now; removes nothing.

        Raises:
            InvalidIdError: If ``session_id`` is not a UUID.
            SpoolError: If the session folder cannot be listed or is a symlink.
        """
        return await self._run(self._count_session, require_uuid(session_id, "session_id"))

    async def size_bytes(self) -> int:
        """Return the folder's current size, the number the cap applies to.

        Raises:
            SpoolError: If the folder cannot be listed.
        """
        return await self._run(self._size)

    async def recover(self, *, min_age_s: float = defaults.TEMP_FILE_MIN_AGE_S) -> int:
        """Remove the temporary files of entry writes that a crash interrupted.

        Args:
            min_age_s: Leave younger ones: another live process may be writing them.

        Returns:
            How many were removed.

        Raises:
            SpoolError: If the folder cannot be cleaned.
        """
        return await self._run(self._recover, min_age_s)

    async def _read_entry(
        self, path: Path, name: re.Pattern[str], kind: str, decode: Callable[..., T]
    ) -> T:
        match = name.fullmatch(path.name)
        session = self._session_of(path)
        if match is None:
            raise SpoolEntryError(f"{path} is not named like a {kind} entry")
        data = await self._run(self._read, session, path.name)
        return _checked(path, decode, data, session_id=session, **match.groupdict())

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(_EXECUTOR, functools.partial(work, *args))
        except OSError as exc:
            raise SpoolError(f"spool {self._root}: {exc}") from exc

    def _session_of(self, path: Path) -> str:
        if path.parent.parent != self._root or not CANONICAL_UUID.fullmatch(path.parent.name):
            raise SpoolEntryError(f"{path} is not an entry of the spool {self._root}")
        return path.parent.name

    def _put(self, session: str, name: str, entry: Callable[[], bytes]) -> Path:
        data = entry()
        folder = ensure_real_folder(self._root, session)
        path = folder / name
        existing = lstat_regular(path)
        used = self._size() - (existing.st_size if existing is not None else 0)
        if used + len(data) > self._max_bytes:
            raise SpoolFullError(
                f"spool {self._root} holds {used} bytes; {len(data)} more would pass its "
                f"{self._max_bytes}-byte cap"
            )
        try:
            write_atomically(path, data)
        except FileNotFoundError:
            # A replay removed the session folder as it emptied, between the two steps above.
            ensure_real_folder(self._root, session)
            write_atomically(path, data)
        return path

    def _discard(self, session: str, name: str) -> bool:
        folder = existing_real_folder(self._root, session)
        if folder is None:
            return False
        path = folder / name
        existed = lstat_regular(path) is not None
        path.unlink(missing_ok=True)
        _remove_if_empty(folder)
        return existed

    def _read(self, session: str, name: str) -> bytes:
        try:
            folder = existing_real_folder(self._root, session)
            if folder is None:
                raise FolderGoneError(f"{self._root / session} is gone")
            return read_regular(folder / name)
        except UnsafePathError as exc:
            raise SpoolEntryError(str(exc)) from exc
        except FileNotFoundError as exc:
            raise SpoolEntryGoneError(f"{self._root / session / name} is gone") from exc

    def _scan(self) -> SpoolScan:
        scan = SpoolScan([], [], [], [], [])
        try:
            with os.scandir(self._root) as entries:
                tops = sorted(entries, key=lambda entry: entry.name)
        except FileNotFoundError:
            return scan
        for top in tops:
            if not (CANONICAL_UUID.fullmatch(top.name) and top.is_dir(follow_symlinks=False)):
                scan.rejected.append(Path(top.path))
                continue
            try:
                with os.scandir(top.path) as entries:
                    for entry in sorted(entries, key=lambda entry: entry.name):
                        _classify(entry, scan)
            except FileNotFoundError:
                # A replay running beside this one emptied and removed the folder.
                continue
        return scan

    def _count_session(self, session: str) -> int:
        folder = existing_real_folder(self._root, session)
        if folder is None:
            return 0
        with os.scandir(folder) as entries:
            return sum(
                1
                for entry in entries
                if not entry.is_dir(follow_symlinks=False)
                and (SEGMENT_NAME.fullmatch(entry.name) or TRANSCRIPT_NAME.fullmatch(entry.name))
            )

    def _delete_session(self, session: str) -> int:
        folder = existing_real_folder(self._root, session)
        if folder is None:
            return 0
        removed = 0
        foreign: list[str] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) or not (
                    _is_entry_name(entry.name) or is_temp_name(entry.name)
                ):
                    foreign.append(entry.name)
                    continue
                # unlink removes a symlink itself, never what it points to.
                Path(entry.path).unlink(missing_ok=True)
                removed += not is_temp_name(entry.name)
        if foreign:
            logger.warning(f"kept {folder}: it holds files the spool did not write: {foreign}")
        else:
            _remove_if_empty(folder)
        return removed

    def _size(self) -> int:
        # The files' sizes, temporary ones included; folders and what symlinks point to are not
        # counted.
        # A file or folder removed meanwhile (by a replay) counts as nothing.
        try:
            with os.scandir(self._root) as tops:
                return sum(
                    _file_size(top) if not top.is_dir(follow_symlinks=False) else _folder_size(top)
                    for top in tops
                )
        except FileNotFoundError:
            return 0

    def _recover(self, min_age_s: float) -> int:
        removed = 0
        for folder in real_subfolders(self._root, CANONICAL_UUID):
            try:
                removed += remove_stale_temp_files(folder, min_age_s=min_age_s)
            except FileNotFoundError:
                # A replay running beside this one emptied and removed the folder.
                continue
        return removed


def _classify(entry: os.DirEntry[str], scan: SpoolScan) -> None:
    path = Path(entry.path)
    if entry.is_dir(follow_symlinks=False):
        scan.rejected.append(path)
    elif is_temp_name(entry.name):
        scan.temporary.append(path)
    elif not entry.is_file(follow_symlinks=False):
        scan.rejected.append(path)
    elif SEGMENT_NAME.fullmatch(entry.name):
        scan.segments.append(path)
    elif TRANSCRIPT_NAME.fullmatch(entry.name):
        scan.transcripts.append(path)
    elif LATENCY_NAME.fullmatch(entry.name):
        scan.latencies.append(path)
    else:
        scan.rejected.append(path)


def _readable(entry: Callable[[], bytes], check: Callable[[bytes], object]) -> Callable[[], bytes]:
    """Wrap an entry's encoder so that it returns only bytes the spool's reader accepts.

    A segment or row that cannot be encoded, or whose entry the reader would refuse, would sit
    in the spool failing every replay: refusing it here makes it a counted failure now.
    """

    def readable() -> bytes:
        try:
            data = entry()
            check(data)
        except Exception as exc:
            raise SpoolError(f"not spooled, a replay could not read it back: {exc}") from exc
        return data

    return readable


def _file_size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _folder_size(folder: os.DirEntry[str]) -> int:
    try:
        with os.scandir(folder.path) as entries:
            return sum(
                _file_size(entry) for entry in entries if not entry.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return 0


def _is_entry_name(name: str) -> bool:
    return any(pattern.fullmatch(name) for pattern in (SEGMENT_NAME, TRANSCRIPT_NAME, LATENCY_NAME))


def _checked(path: Path, decode: Callable[..., T], data: bytes, **names: str) -> T:
    try:
        return decode(data, **names)
    except SpoolEntryError as exc:
        raise SpoolEntryError(f"{path}: {exc}") from exc


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        # Not empty: other entries, or one being written right now.
        return
