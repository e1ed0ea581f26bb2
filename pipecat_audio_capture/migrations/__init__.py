"""The SQL migrations shipped with the package, one folder per database dialect.

Each folder holds plain-SQL files named ``NNNN_description.sql``. The number is the migration's
version: versions start at 1 and are unique, so a database records exactly which files it has
applied. A number may be skipped: changes developed side by side reserve theirs in advance. A
shipped file is never edited once released; a schema change is a new file.
"""

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Literal

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
        The migrations, lowest version first.

    Raises:
        MigrationError: If the shipped files are misnamed or two share a version, which
            means a broken package rather than a broken database.
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
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise MigrationError(
            f"{dialect} migration versions must be unique from 1, found {versions}"
        )
    return tuple(migrations)
