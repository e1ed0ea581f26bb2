"""Where the command-line tool finds local recordings: one rule for every command and ``serve``.

``serve``, ``export``, ``replay``, ``delete`` and ``purge`` find a segment's WAV under this
folder by its ids (``SESSION_ID/SEGMENT_ID.wav``), whatever absolute path the index holds, so a
recordings folder copied or moved elsewhere works from its new place.
"""

from pathlib import Path

from pipecat_audio_capture.cli_index import IndexTarget, SQLiteTarget

RECORDINGS_HELP = "local recordings folder (default: the folder of a SQLite index)"
"""The ``--recordings`` help of every command, which all resolve it alike."""


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
