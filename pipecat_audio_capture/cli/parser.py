"""The command line's grammar.

Every command, its options, and the where-the-data-is options a command also takes before its
name.
"""

import argparse
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

from pipecat_audio_capture import defaults
from pipecat_audio_capture.cli.demo import run_demo
from pipecat_audio_capture.cli.export import run_export
from pipecat_audio_capture.cli.index import run_migrate, run_sessions, run_show
from pipecat_audio_capture.cli.maintenance import (
    add_audio_options,
    add_deletion_options,
    run_delete,
    run_purge,
    run_replay,
)
from pipecat_audio_capture.cli.recordings import add_recordings_option
from pipecat_audio_capture.cli.serve import run_serve
from pipecat_audio_capture.cli.status import EXIT_ERROR, PROG, one_line
from pipecat_audio_capture.cli.values import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PORT,
    retention_period,
    speed,
    whole_number,
)
from pipecat_audio_capture.index_access import DB_ENV, DEFAULT_DB, DSN_ENV, IndexTarget

_WHERE_OPTIONS = (
    "db",
    "dsn",
    "recordings",
    "bucket",
    "prefix",
    "s3_bucket",
    "s3_prefix",
    "s3_endpoint_url",
    "spool",
)
"""Options that say where the data is: accepted before the command as well as after it."""
_EXCLUSIVE = (
    ("db", "dsn"),
    ("recordings", "bucket"),
    ("recordings", "s3_bucket"),
    ("bucket", "s3_bucket"),
)

_INDEX_HELP = f"""\
the index:
  Give --db PATH (a SQLite file) or --dsn URL (PostgreSQL), before or after the command.
  Without either: ${DSN_ENV}, else ${DB_ENV},
  else ./{DEFAULT_DB} (where the offline demo writes). A flag beats
  both variables; when both variables are set, the DSN wins. Read commands never
  create an index: run `migrate` first.
"""

Command = Callable[[argparse.Namespace, IndexTarget], Coroutine[Any, Any, int]]
"""A command that reads or writes an index: run with the index the options name."""
StandaloneCommand = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""A command that needs no index (the demo)."""
AddCommand = Callable[[str, Command, str, str], argparse.ArgumentParser]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line that names the help to read."""

    def error(self, message: str) -> NoReturn:
        """Print the error as one line on stderr and exit with 2."""
        print(f"{PROG}: error: {one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line."""
    parser = _Parser(
        prog=PROG,
        usage="%(prog)s [-h] [WHERE OPTIONS] COMMAND ...",
        description="Record a demo call, and read the calls recorded by pipecat-audio-capture\n"
        "from their index.",
        epilog=f"{_INDEX_HELP}\nRun `{PROG} COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_where_options(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_demo(commands)
    add = _command_adder(commands)
    _add_read_commands(add)
    _add_serve(add)
    _add_maintenance_commands(add)
    return parser


def _command_adder(commands: "argparse._SubParsersAction[_Parser]") -> AddCommand:
    """Return a function that adds one index command, with --db and --dsn, to ``commands``."""
    index_options = _Parser(add_help=False)
    choice = index_options.add_mutually_exclusive_group()
    choice.add_argument("--db", metavar="PATH", help=f"SQLite index file (${DB_ENV})")
    choice.add_argument("--dsn", metavar="URL", help=f"PostgreSQL DSN or URI (${DSN_ENV})")

    def add(name: str, run: Command, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            prog=f"{PROG} {name}",
            parents=[index_options],
            help=summary,
            description=description,
            epilog=_INDEX_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(
            command=run,
            standalone=False,
            command_name=name,
            command_parser=sub,
            required_options=(),
        )
        return sub

    return add


def _add_demo(commands: "argparse._SubParsersAction[_Parser]") -> None:
    demo = commands.add_parser(
        "demo",
        prog=f"{PROG} demo",
        help="record a simulated call offline (no keys, no network, no server)",
        description="Run a simulated voice-bot call through a real Pipecat pipeline (Silero VAD,\n"
        "Pipecat's aggregators, scripted STT/LLM/TTS, real-time playback) with the recorder\n"
        "between TTS and output, and print its call log. WAVs go to OUT/SESSION_ID/, the index\n"
        "to OUT/index.sqlite3.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(
        command=run_demo,
        standalone=True,
        command_name="demo",
        command_parser=demo,
        required_options=(),
    )
    demo.add_argument(
        "--out", metavar="DIR", type=Path, default=Path(DEFAULT_DB).parent, help="(./recordings)"
    )
    demo.add_argument(
        "--speed",
        type=speed,
        default=1.0,
        help="times faster than real time, 0.1-100 (1.0); barge-in cuts are exact only at 1.0",
    )


def _add_read_commands(add: AddCommand) -> None:
    sessions = add(
        "sessions",
        run_sessions,
        "list the calls, newest first",
        "List the calls, newest first: start (UTC), length, turns, user and bot talk time,\n"
        "interruptions and the size of their WAV files.",
    )
    sessions.add_argument(
        "--limit",
        type=whole_number(1, MAX_LIMIT),
        default=50,
        help=f"calls to list, 1-{MAX_LIMIT} (50)",
    )
    sessions.add_argument(
        "--offset", type=whole_number(0, MAX_OFFSET), default=0, help="calls to skip (0)"
    )
    sessions.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = add(
        "show",
        run_show,
        "print one call's turns in spoken order",
        "Print a call's turns in spoken order: time since the call started, role, duration,\n"
        "response gap of bot turns, which side flagged the turn as cut short, text and audio;\n"
        "then why each response took its time (session_turn_latency): total, endpointing,\n"
        "STT, turn detection, LLM, TTS and the slowest part.",
    )
    show.add_argument("session_id", metavar="SESSION_ID", help="the call's UUID")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")

    export = add(
        "export",
        run_export,
        "copy one call's WAV files, its stereo call.wav and transcript into a folder",
        "Copy a call's WAV files into a folder, named by turn and role (001-user.wav,\n"
        "002-assistant.wav; every part of a split turn, as 003-user-part1.wav, ...), with\n"
        "call.wav (the whole call in stereo: user left, bot right), transcript.json and\n"
        "transcript.csv (one row per turn, every call-log field). Only new files are written:\n"
        "a name already in the folder stops the export before it starts. file:// audio is read\n"
        "from --recordings, found there by its ids (SESSION_ID/SEGMENT_ID.wav) without\n"
        "following links; gs:// audio is downloaded from its bucket (Application Default\n"
        "Credentials, extra [gcs]). A segment whose audio is not its own file, a link, or\n"
        "missing is left out (silent in call.wav) and reported, and the command exits 2; a\n"
        "segment that plays in call.wav otherwise than its row says is a warning.",
    )
    export.add_argument("session_id", metavar="SESSION_ID", help="the call's UUID")
    export.add_argument("--out", metavar="DIR", type=Path, required=True, help="folder to fill")
    add_recordings_option(export)

    add(
        "migrate",
        run_migrate,
        "create or upgrade the index",
        "Create or upgrade the index and print the migrations applied: a SQLite file is\n"
        "created with its folder; on PostgreSQL the tables go to the DSN's search_path schema.",
    )


def _add_serve(add: AddCommand) -> None:
    serve = add(
        "serve",
        run_serve,
        "review the calls in a browser: who spoke when, and play any turn",
        "Serve the call review on http://HOST:PORT/ until Ctrl-C: the calls, newest first; per\n"
        "call a picture of who spoke when and the call log, with a player for every turn.\n"
        "Audio is served only for indexed segments, local files only from under --recordings.\n"
        "Listening anywhere but loopback needs an access token, which every request must then\n"
        "carry (open the page once with ?token=TOKEN, or send Authorization: Bearer TOKEN).",
    )
    serve.add_argument(
        "--host", default=defaults.SERVE_HOST, help=f"address to listen on ({defaults.SERVE_HOST})"
    )
    serve.add_argument(
        "--port",
        type=whole_number(0, MAX_PORT),
        default=defaults.SERVE_PORT,
        help=f"0 picks a free one ({defaults.SERVE_PORT})",
    )
    add_recordings_option(serve)
    serve.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3-compatible store that s3:// audio is presigned for (AWS, or $AWS_ENDPOINT_URL_S3)",
    )
    serve.add_argument(
        "--token",
        help="random access token, 128+ bits ($PIPECAT_AUDIO_CAPTURE_TOKEN: ps does not show it)",
    )


def _add_maintenance_commands(add: AddCommand) -> None:
    replay = add(
        "replay",
        run_replay,
        "store what the spool kept while storage was down",
        "Store every segment and transcript row the spool holds (audio to --recordings,\n"
        "--bucket or --s3-bucket, rows to the index) and remove each entry once it is stored.\n"
        "Running it twice stores nothing twice. Exits 2 while entries remain.",
    )
    replay.add_argument("--spool", metavar="DIR", type=Path, help="spool folder (required)")
    replay.set_defaults(required_options=("spool",))
    add_audio_options(replay)

    delete = add(
        "delete",
        run_delete,
        "delete one call's audio, spool entries and index rows",
        "Delete a call everywhere: its spool entries, then its audio (by its folder or prefix,\n"
        "indexed or not), then its index rows. Safe to run again after a partial failure; a\n"
        "call of which nothing is left is an error. On a terminal it asks first, unless\n"
        "--yes; from a script or a pipe it does not ask.",
    )
    delete.add_argument("session_id", metavar="SESSION_ID", help="the call's UUID")
    delete.add_argument("--spool", metavar="DIR", type=Path, help="spool folder, if used")
    add_audio_options(delete)
    add_deletion_options(delete)

    purge = add(
        "purge",
        run_purge,
        "delete every call older than a retention period",
        "Delete, as `delete` does, every call whose last audio or transcript is older than\n"
        "--older-than. Exits 2 if a call could not be deleted (run it again to finish). On a\n"
        "terminal it asks first, unless --yes; from a script or a pipe it does not ask.",
    )
    purge.add_argument(
        "--older-than",
        type=retention_period,
        required=True,
        help="period: 30d, 12h, 90m, 3600s; 1s to 36500d",
    )
    purge.add_argument("--spool", metavar="DIR", type=Path, help="spool folder, if used")
    add_audio_options(purge)
    add_deletion_options(purge)


def apply_where_options(args: argparse.Namespace) -> None:
    """Move the where-the-data-is options given before the command into the command's own.

    Raises:
        SystemExit: Through the command parser's ``error`` if the command does not take one,
            one is given both before and after the command with different values, two
            exclusive ones are given, or a required one is missing.
    """
    parser: argparse.ArgumentParser = args.command_parser
    for name in _WHERE_OPTIONS:
        before = getattr(args, f"before_{name}")
        if before is None:
            continue
        if not hasattr(args, name):
            parser.error(f"{args.command_name} does not take {_flag(name)}")
        after = getattr(args, name)
        if after is not None and after != before:
            parser.error(f"{_flag(name)} is given twice, before and after {args.command_name}")
        setattr(args, name, before)
    for first, second in _EXCLUSIVE:
        if getattr(args, first, None) is not None and getattr(args, second, None) is not None:
            parser.error(f"argument {_flag(second)}: not allowed with argument {_flag(first)}")
    for name in args.required_options:
        if getattr(args, name) is None:
            parser.error(f"{args.command_name} needs {_flag(name)}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_where_options(parser: argparse.ArgumentParser) -> None:
    """Add the where-the-data-is options a command also takes before its name."""
    where = parser.add_argument_group(
        "where the data is (also accepted after the command, by the commands that use it)"
    )
    index = where.add_mutually_exclusive_group()
    index.add_argument("--db", metavar="PATH", dest="before_db", help="SQLite index file")
    index.add_argument("--dsn", metavar="URL", dest="before_dsn", help="PostgreSQL DSN or URI")
    audio = where.add_mutually_exclusive_group()
    audio.add_argument(
        "--recordings", metavar="DIR", type=Path, dest="before_recordings", help="audio folder"
    )
    audio.add_argument("--bucket", metavar="NAME", dest="before_bucket", help="GCS bucket")
    audio.add_argument("--s3-bucket", metavar="NAME", dest="before_s3_bucket", help="S3 bucket")
    where.add_argument(
        "--prefix", metavar="PREFIX", dest="before_prefix", help="object prefix in the bucket"
    )
    where.add_argument(
        "--s3-prefix", metavar="PREFIX", dest="before_s3_prefix", help="key prefix in the S3 bucket"
    )
    where.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        dest="before_s3_endpoint_url",
        help="S3-compatible endpoint (MinIO, R2, Wasabi)",
    )
    where.add_argument("--spool", metavar="DIR", type=Path, dest="before_spool", help="spool")
