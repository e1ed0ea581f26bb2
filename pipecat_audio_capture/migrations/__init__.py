"""The SQL migrations shipped with the package, one folder per database dialect.

Each folder holds plain-SQL files named ``NNNN_description.sql``. The number is the migration's
version, unique and from 1 up; a database records exactly which versions it has applied, and
pending ones run in version order. Numbers may be skipped: changes developed side by side reserve
their numbers up front, and one may ship before another. A shipped file is never edited once
released; a schema change is a new file.

:func:`pending_migrations` is the one migration runner of both dialects: it decides what runs,
in which order, and logs what ran; each backend only executes and records what it is handed,
in its own transaction (PostgreSQL asynchronously, SQLite in a worker thread).
"""

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Literal

from loguru import logger

from pipecat_audio_capture.errors import MigrationError

Dialect = Literal["postgres", "sqlite"]

MIGRATIONS_TABLE = "audio_capture_migrations"
"""Table, in the index's own schema, that records each applied version."""

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file.

    Parameters:
        version: Its number, from 1 upwards.
        name: The description part of the file name.
        sql: The file's SQL, which may hold several statements.
    """

    version: int
    name: str
    sql: str


@cache
def load_migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Return a dialect's migrations in version order.

    Args:
        dialect: ``"postgres"`` or ``"sqlite"``.

    Returns:
        The migrations, in increasing version order.

    Raises:
        MigrationError: If the shipped files are misnamed, a version is 0 or two files share one,
            which means a broken package rather than a broken database.
    """
    folder = files(__name__).joinpath(dialect)
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {dialect}/{entry.name} is not NNNN_name.sql")
        migrations.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if (versions and versions[0] < 1) or len(set(versions)) != len(versions):
        raise MigrationError(
            f"{dialect} migration versions must be unique and at least 1, found {versions}"
        )
    return tuple(migrations)


def pending_migrations(dialect: Dialect, applied: Collection[int]) -> Iterator[Migration]:
    """Yield each migration a database lacks, oldest first, and log each the caller applied.

    The caller reads the applied versions inside its migration transaction, runs each yielded
    migration and records its version, then asks for the next one; a migration is logged as
    applied only once the caller comes back for more, so one that fails is never logged. Versions
    the database has but this package does not know (a newer release applied them) are logged
    and left alone.

    Args:
        dialect: ``"postgres"`` or ``"sqlite"``.
        applied: The versions the database has already applied.

    Yields:
        The pending migrations, in increasing version order.
    """
    migrations = load_migrations(dialect)
    unknown = set(applied) - {migration.version for migration in migrations}
    if unknown:
        logger.warning(
            f"the audio index has migrations {sorted(unknown)} that this version of "
            "pipecat-audio-capture does not know; a newer release applied them"
        )
    for migration in migrations:
        if migration.version in applied:
            continue
        yield migration
        logger.info(f"applied audio index migration {migration.version:04d}_{migration.name}")
