"""The ``--recordings`` option of the commands that read local audio."""

RECORDINGS_HELP = "local recordings folder (default: the folder of a SQLite index)"
"""The ``--recordings`` help of every command, which all resolve it alike (see
:func:`pipecat_audio_capture.index_access.recordings_folder`)."""
