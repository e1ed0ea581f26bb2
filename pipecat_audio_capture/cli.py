"""The ``pipecat-audio-capture`` command: run the demo, list calls, read one, export it, migrate,
review calls in a browser.

Run ``pipecat-audio-capture --help`` (or ``python -m pipecat_audio_capture --help``).
Expected failures (a bad id, an unknown call, no index, no server) and usage errors (an unknown
option, a value out of range) print one line on stderr and exit with 2.

The index commands import neither Pipecat nor numpy: they start in a fraction of a second,
without Pipecat's banner.
"""

import argparse
import asyncio
import io
import os
import shlex
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.cli_export import CALL_WAV, ExportResult, export_call
from pipecat_audio_capture.cli_format import (
    call_log_records,
    format_call_log,
    format_sessions,
    format_turn_latency,
    output_width,
    plural,
    session_records,
    to_json,
)
from pipecat_audio_capture.cli_index import (
    DB_ENV,
    DEFAULT_DB,
    DSN_ENV,
    CommandError,
    IndexTarget,
    migrate_index,
    open_index,
    resolve_target,
)
from pipecat_audio_capture.cli_invocation import invocation
from pipecat_audio_capture.cli_maintenance import (
    add_audio_options,
    add_deletion_options,
    run_delete,
    run_purge,
    run_replay,
)
from pipecat_audio_capture.cli_recordings import RECORDINGS_HELP, recordings_folder
from pipecat_audio_capture.cli_values import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PORT,
    retention_period,
    speed,
    whole_number,
)
from pipecat_audio_capture.errors import AudioCaptureError
from pipecat_audio_capture.ids import require_uuid
from pipecat_audio_capture.storage.index import (
    CallLogEntry,
    MetadataIndex,
    ResponseGap,
    TurnLatency,
)

PROG = "pipecat-audio-capture"
CALL_AUDIO_MODULE = "pipecat_audio_capture.call_audio"
EXIT_OK = 0
EXIT_ERROR = 2
"""Expected failures share argparse's usage-error code."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as shells report a process ended by SIGINT."""

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
StandaloneCommand = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit code.

    As a console script it owns the process, so it routes the package's log to stderr at
    WARNING and above (migrations and connections log at INFO).

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 2 on a usage error or an expected failure (reported on stderr), 130 on
        Ctrl-C.
    """
    for stream in (sys.stdout, sys.stderr):
        # A path from argv that is not UTF-8 holds surrogates, which must not end in a
        # UnicodeEncodeError when printed back.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _apply_where_options(args)
    except SystemExit as exc:
        # --help and usage errors: argparse has printed what it had to say.
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    logger.remove()
    logger.add(_to_stderr, level="WARNING", format="{message}")
    try:
        if args.standalone:
            standalone: StandaloneCommand = args.command
            return asyncio.run(standalone(args))
        command: Command = args.command
        target = resolve_target(args.db, args.dsn, os.environ)
        return asyncio.run(command(args, target))
    except AudioCaptureError as exc:
        # Driver messages span lines (hints, SQL context); the CLI promises one.
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line that names the help to read."""

    def error(self, message: str) -> NoReturn:
        """Print the error as one line on stderr and exit with 2."""
        print(f"{PROG}: error: {_one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def _apply_where_options(args: argparse.Namespace) -> None:
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


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _to_stderr(message: str) -> None:
    # Looks sys.stderr up on each message (a sink given the stream would keep the one of the
    # first call, which tests replace).
    sys.stderr.write(message)


async def _demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the folder {out}: {exc.strerror or exc}") from exc
    # Imported here: the demo pulls in the Silero VAD model and the simulated call, which the
    # index commands never need.
    from pipecat_audio_capture.demo.recorded_call import record_demo_call

    result = await record_demo_call(args.out, speed=args.speed)
    width = output_width(os.environ, sys.stdout)
    print(f"\ncall log of session {result.session_id} (from session_call_log):\n")
    print(format_call_log(result.call_log, result.gaps, width=width))
    _print_latency(result.call_log, result.latency, width)
    stats = result.stats
    print(
        f"\n{stats.stored} of {plural(stats.recorded, 'segment')} stored "
        f"({stats.bytes_stored / 1000:.1f} kB) under {result.recordings.resolve()}/"
        f"{result.session_id}/, index {result.index_path.resolve()}"
    )
    # Each command on a line of its own, exactly as it runs from this folder in a new shell.
    command = invocation()
    db = shlex.quote(str(result.index_path))
    url = f"http://{defaults.SERVE_HOST}:{defaults.SERVE_PORT}/"
    print("\nread it again:")
    print(f"  {command} show {result.session_id} --db {db}")
    print(f"review it in a browser, then open {url}:")
    print(f"  {command} serve --db {db}")
    return EXIT_OK if stats.stored == stats.recorded else EXIT_ERROR


async def _sessions(args: argparse.Namespace, target: IndexTarget) -> int:
    async with open_index(target) as index:
        summaries = await index.list_sessions(limit=args.limit, offset=args.offset)
    if args.json:
        print(to_json(session_records(summaries)))
    elif summaries:
        print(format_sessions(summaries))
    else:
        skipped = f" after the first {args.offset}" if args.offset else ""
        print(f"no sessions{skipped} in {target}")
    return EXIT_OK


async def _show(args: argparse.Namespace, target: IndexTarget) -> int:
    session_id = require_uuid(args.session_id, "session id")
    async with open_index(target) as index:
        entries, gaps = await _read_call(index, session_id, target)
        latency = await index.turn_latency(session_id)
    if args.json:
        print(to_json(call_log_records(entries, gaps, latency=latency)))
        return EXIT_OK
    width = output_width(os.environ, sys.stdout)
    started = entries[0].occurred_at
    print(f"session {session_id}, started {started:%Y-%m-%d %H:%M:%S} UTC\n")
    print(format_call_log(entries, gaps, width=width))
    _print_latency(entries, latency, width)
    return EXIT_OK


def _print_latency(
    entries: list[CallLogEntry], latency: list[TurnLatency], width: int | None
) -> None:
    if latency:
        print("\nwhy each response took its time (from session_turn_latency):\n")
        print(format_turn_latency(entries, latency, width=width))


async def _export(args: argparse.Namespace, target: IndexTarget) -> int:
    session_id = require_uuid(args.session_id, "session id")
    async with open_index(target) as index:
        entries, gaps = await _read_call(index, session_id, target)
        segments = await index.session_segments(session_id)
    recordings = recordings_folder(args.recordings, target)
    # The builder logs each segment's issue; they are printed below, with their turns, instead.
    logger.disable(CALL_AUDIO_MODULE)
    try:
        result = await export_call(
            entries, gaps, args.out, segments=segments, recordings=recordings
        )
    finally:
        logger.enable(CALL_AUDIO_MODULE)
    return _report_export(result)


def _report_export(result: ExportResult) -> int:
    """Print what an export wrote and what it left out; return the exit code.

    A segment left out of a turn's files or silent in ``call.wav``, or a ``call.wav`` that
    could not be built, is an error (exit 2); one trimmed, padded or cut in ``call.wav`` a
    warning.
    """
    for refusal in result.refused:
        print(
            f"{PROG}: error: {_turn_label(refusal.turn, refusal.part)}: not exported: "
            f"{refusal.reason}",
            file=sys.stderr,
        )
    issues = result.call_audio_issues
    for issue in issues:
        detail = issue.issue
        print(
            f"{PROG}: warning: {CALL_WAV}: {_turn_label(issue.turn, issue.part)} "
            f"({detail.speaker} segment {detail.segment_id}): {detail.kind}: {detail.detail}",
            file=sys.stderr,
        )
    written = plural(len(result.files), "file")
    print(f"exported {written} to {result.out_dir}: {', '.join(result.files)}")
    errors = []
    silenced = sum(issue.silenced for issue in issues)
    if issues:
        summary = (
            f"{CALL_WAV}: {plural(len(issues), 'segment')} not played as indexed, "
            f"{silenced} of them silent"
        )
        if silenced:
            errors.append(summary)
        else:
            print(f"{PROG}: warning: {summary}", file=sys.stderr)
    if result.refused:
        turns = len({refusal.turn for refusal in result.refused})
        errors.append(f"the audio of {plural(turns, 'turn')} was refused; the rest was exported")
    if result.call_audio_error is not None:
        errors.append(f"{CALL_WAV} not written: {result.call_audio_error}")
    for error in errors:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return EXIT_ERROR if errors else EXIT_OK


def _turn_label(turn: int | None, part: int | None) -> str:
    label = "a segment outside the call log" if turn is None else f"turn {turn}"
    return label if part is None else f"{label} part {part}"


async def _migrate(args: argparse.Namespace, target: IndexTarget) -> int:
    applied = await migrate_index(target)
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"{target} is up to date")
    return EXIT_OK


async def _serve(args: argparse.Namespace, target: IndexTarget) -> int:
    # Imported here: aiohttp and the pages are needed by this command only.
    from pipecat_audio_capture.web import ServeOptions, serve
    from pipecat_audio_capture.web.security import TOKEN_ENV

    token = args.token or os.environ.get(TOKEN_ENV) or None
    options = ServeOptions(
        args.host, args.port, args.recordings, token, s3_endpoint_url=args.s3_endpoint_url
    )
    await serve(target, options)
    return EXIT_OK


async def _read_call(
    index: MetadataIndex, session_id: str, target: IndexTarget
) -> tuple[list[CallLogEntry], list[ResponseGap]]:
    """Return a call's call log and response gaps.

    Raises:
        CommandError: If the index holds no turn of the call.
    """
    entries = await index.call_log(session_id)
    if not entries:
        raise CommandError(f"session {session_id} not found in {target}")
    return entries, await index.response_gaps(session_id)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage="%(prog)s [-h] [WHERE OPTIONS] COMMAND ...",
        description="Record a demo call, and read the calls recorded by pipecat-audio-capture\n"
        "from their index.",
        epilog=f"{_INDEX_HELP}\nRun `{PROG} COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_where_options(parser)
    index_options = _Parser(add_help=False)
    choice = index_options.add_mutually_exclusive_group()
    choice.add_argument("--db", metavar="PATH", help=f"SQLite index file (${DB_ENV})")
    choice.add_argument("--dsn", metavar="URL", help=f"PostgreSQL DSN or URI (${DSN_ENV})")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

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
        command=_demo,
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

    sessions = add(
        "sessions",
        _sessions,
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
        _show,
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
        _export,
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
    export.add_argument(
        "--recordings",
        metavar="DIR",
        type=Path,
        help=RECORDINGS_HELP,
    )

    add(
        "migrate",
        _migrate,
        "create or upgrade the index",
        "Create or upgrade the index and print the migrations applied: a SQLite file is\n"
        "created with its folder; on PostgreSQL the tables go to the DSN's search_path schema.",
    )

    serve = add(
        "serve",
        _serve,
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
    serve.add_argument(
        "--recordings",
        metavar="DIR",
        type=Path,
        help=RECORDINGS_HELP,
    )
    serve.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3-compatible store that s3:// audio is presigned for (AWS, or $AWS_ENDPOINT_URL_S3)",
    )
    serve.add_argument(
        "--token",
        help="random access token, 128+ bits ($PIPECAT_AUDIO_CAPTURE_TOKEN: ps does not show it)",
    )
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
    return parser


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
