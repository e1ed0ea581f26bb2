"""Which audio index a reader (the command line, the review page) opens, and opening it.

Also where such a reader finds local recordings: one rule for every command and ``serve``,
which find a segment's WAV under this folder by its ids (``SESSION_ID/SEGMENT_ID.wav``),
whatever absolute path the index holds, so a recordings folder copied or moved elsewhere works
from its new place.

The PostgreSQL backend (and so psycopg) is imported only when a DSN is used, so the SQLite
commands work without the ``postgres`` extra.
"""

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError, StorageConfigError, StorageError
from pipecat_audio_capture.migrations import Dialect, load_migrations
from pipecat_audio_capture.storage.index import MetadataIndex
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage

if TYPE_CHECKING:
    from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage

DB_ENV = "PIPECAT_AUDIO_CAPTURE_DB"
DSN_ENV = "PIPECAT_AUDIO_CAPTURE_DSN"

DEFAULT_DB = Path(defaults.CLI_DB)
"""The SQLite index used when nothing else is given: where the offline demo writes."""


class CommandError(AudioCaptureError):
    """A command cannot do what it was asked; the CLI prints the message and exits with 2."""


@dataclass(frozen=True)
class SQLiteTarget:
    """An index in a SQLite file."""

    path: Path

    def __str__(self) -> str:
        """Name the index by its file, as messages show it."""
        return str(self.path)


@dataclass(frozen=True)
class PostgresTarget:
    """An index on a PostgreSQL server."""

    # Kept out of repr and str: a DSN may hold a password.
    dsn: str = field(repr=False)

    def __str__(self) -> str:
        """Name the index without its connection string, which may hold a password."""
        return "the PostgreSQL index"


IndexTarget = SQLiteTarget | PostgresTarget


def resolve_target(db: str | None, dsn: str | None, environ: Mapping[str, str]) -> IndexTarget:
    """Pick the index: a flag, else the DSN variable, else the DB variable, else :data:`DEFAULT_DB`.

    A flag always beats the environment. When both variables are set the DSN wins: a server set
    up for a whole team is the index meant, a file is the single-machine fallback.

    Args:
        db: The ``--db`` flag.
        dsn: The ``--dsn`` flag (argparse keeps the two exclusive).
        environ: The process environment.
    """
    if dsn:
        return PostgresTarget(dsn)
    if db:
        return SQLiteTarget(Path(db).expanduser())
    if environ.get(DSN_ENV):
        return PostgresTarget(environ[DSN_ENV])
    if environ.get(DB_ENV):
        return SQLiteTarget(Path(environ[DB_ENV]).expanduser())
    return SQLiteTarget(DEFAULT_DB)


@asynccontextmanager
async def open_index(target: IndexTarget, *, connections: int = 1) -> AsyncIterator[MetadataIndex]:
    """Open an existing index for reading, and close it on exit.

    ``connections`` is how many reads may run side by side (one command runs its queries one
    after the other; the call review serves several requests at once).

    A missing SQLite file is an error rather than a new empty index, and a PostgreSQL schema is
    not migrated: reading never creates a database (``SQLiteAudioMetaStorage`` does bring an
    existing file of an older release up to date on first use).

    Raises:
        CommandError: If the SQLite file does not exist, or the PostgreSQL schema has no index
            tables (raised from the block's first query).
        StorageConfigError: If the file cannot be opened, the DSN is malformed or the server
            cannot be reached.
    """
    if isinstance(target, SQLiteTarget):
        if not target.path.exists():
            raise CommandError(
                f"no audio index at {target.path}: pass --db or --dsn, or create an empty one "
                f"with `pipecat-audio-capture migrate --db {target.path}`"
            )
        async with SQLiteAudioMetaStorage(
            target.path, read_connections=connections
        ) as sqlite_index:
            yield sqlite_index
        return

    postgres_backend = _postgres_backend()
    from psycopg.errors import UndefinedTable

    pg_index = await postgres_backend.connect(
        target.dsn, min_size=1, max_size=connections, migrate=False
    )
    try:
        yield pg_index
    except StorageError as exc:
        if isinstance(exc.__cause__, UndefinedTable):
            raise CommandError(
                "this database has no audio index tables in its search_path schema: "
                "run `pipecat-audio-capture migrate --dsn ...` first"
            ) from exc
        raise
    finally:
        await pg_index.close()


async def migrate_index(target: IndexTarget) -> list[str]:
    """Create or upgrade an index (a SQLite file is created with its folder).

    Returns:
        The migrations applied, oldest first, as ``NNNN_name``.

    Raises:
        StorageConfigError: If the file cannot be opened, the DSN is malformed or the server
            cannot be reached.
        MigrationError: If a migration fails.
    """
    dialect: Dialect
    if isinstance(target, SQLiteTarget):
        dialect = "sqlite"
        async with SQLiteAudioMetaStorage(target.path) as sqlite_index:
            versions = await sqlite_index.run_migrations()
    else:
        dialect = "postgres"
        versions = await _migrate_postgres(target.dsn)
    names = {migration.version: migration.name for migration in load_migrations(dialect)}
    return [f"{version:04d}_{names[version]}" for version in versions]


async def _migrate_postgres(dsn: str) -> list[int]:
    # Checked first: without the postgres extra the command says which extra to install.
    _postgres_backend()
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from pipecat_audio_capture.storage.postgres import migrate_postgres

    # PostgresAudioMetaStorage.connect(migrate=True) does not return the versions it applied,
    # so the migrations run here on a connection of our own, with the same checks.
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StorageConfigError(f"malformed PostgreSQL DSN: {exc}") from exc
    timeout_s = defaults.PG_CONNECT_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout_s):
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s))
            )
    except TimeoutError as exc:
        raise StorageConfigError(f"PostgreSQL did not answer within {timeout_s} s") from exc
    except psycopg.Error as exc:
        raise StorageConfigError(f"cannot connect to PostgreSQL: {exc}") from exc
    async with conn:
        return await migrate_postgres(conn)


def _postgres_backend() -> type["PostgresAudioMetaStorage"]:
    """Import the PostgreSQL backend, which needs the ``postgres`` extra.

    Raises:
        CommandError: If psycopg or psycopg-pool is not installed.
    """
    try:
        from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
    except ImportError as exc:
        raise CommandError(
            f"--dsn needs the postgres extra: pip install 'pipecat-audio-capture[postgres]' ({exc})"
        ) from exc
    return PostgresAudioMetaStorage


def recordings_folder(given: Path | None, target: IndexTarget) -> Path | None:
    """Return the recordings folder: ``--recordings``, else the SQLite index's folder, else None.

    The demo and the embedded default keep ``index.sqlite3`` beside the session folders, so a
    SQLite index (from ``--db``, ``$PIPECAT_AUDIO_CAPTURE_DB`` or the default path) names its
    folder. A PostgreSQL index says nothing about where files are: None, and the command asks
    for ``--recordings`` when it meets local audio.

    Args:
        given: The ``--recordings`` option, or None.
        target: The index the command reads.
    """
    if given is not None:
        return given
    if isinstance(target, SQLiteTarget):
        return target.path.parent
    return None
