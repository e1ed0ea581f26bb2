"""The program's name, exit codes and one-line messages: what every command reports alike."""

PROG = "pipecat-audio-capture"
EXIT_OK = 0
EXIT_ERROR = 2
"""Expected failures share argparse's usage-error code."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as shells report a process ended by SIGINT."""


def one_line(message: str) -> str:
    """Return a message on one line: driver messages span lines, the CLI promises one."""
    return " ".join(message.split())
