"""README.md's code blocks, run as a user would paste them, so the README cannot rot.

The blocks are read from README.md itself, never copied. What a block's tag means:

- ``python``: run (top-level ``await`` allowed, as in an async function of your bot). A block
  that continues your bot's code finds the names the quick start has in scope (``session_id``,
  ``turn_ids``, ``index``, ``storage``, the aggregators, ``dsn``, ``meta``); absolute paths
  under ``/var/`` are moved into a temporary folder. Functions named ``test_*`` are run too.
- ``bash``: each line run in a shell, in the folder where the quick start recorded its call, with
  the package's ``bin`` folder on ``PATH``; ``SESSION_ID`` is that call's id and ``DIR`` an
  empty folder. A ``serve`` line is started, checked to list the call, and stopped with SIGINT.
- ``sql``: run against an index holding a call, on PostgreSQL, and on SQLite too unless the
  block's paragraph says it is PostgreSQL's.
- ``sh``: install and ``make`` lines, checked but not run (they need the network or take
  minutes; ``.ci/run`` runs ``make demo`` and ``make test``): every extra a ``pip install``
  names exists, every ``make`` target exists, every ``pipecat-audio-capture`` command exists.
- ``text``: output and file trees, not run.

A python, bash or sql block under a heading no test here claims fails the suite, so a new block
gets a runner when it is written.
"""

import ast
import asyncio
import contextlib
import inspect
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.transports.base_transport import BaseTransport

from pipecat_audio_capture import (
    CompositeAudioStorage,
    LocalAudioStorage,
    ReplayReport,
    SQLiteAudioMetaStorage,
    TranscriptRecorder,
    TurnIds,
    defaults,
)
from pipecat_audio_capture.capture import SessionCaptureStats
from pipecat_audio_capture.demo.call import CallServices, build_call_services
from pipecat_audio_capture.demo.script import BotLine, CallScript, Exchange, UserLine
from pipecat_audio_capture.index_access import DB_ENV, DSN_ENV
from pipecat_audio_capture.processor_stats import ProcessorStats
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage
from pipecat_audio_capture.wav import read_wav_header
from pipecat_audio_capture.web.security import TOKEN_ENV

from support.browser import running_review
from support.index import PgSchema, make_segment, make_transcript, new_id
from support.latency import make_latency
from support.s3 import versions as s3_versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TAGS = {"python", "bash", "sql", "sh", "text"}
RUN_TAGS = {"python", "bash", "sql"}
# How many run blocks each heading holds; every one is run below.
CLAIMED = Counter(
    {
        ("Quick start", "python"): 1,
        ("The turn-id contract", "python"): 2,
        ("Testing your bot", "python"): 1,
        ("Indexing in PostgreSQL", "python"): 1,
        ("Example queries", "sql"): 5,
        ("Production: audio in a bucket, index in PostgreSQL", "python"): 1,
        ("Playing a recording back", "python"): 1,
        ("Production: audio in an S3 bucket, index in PostgreSQL", "python"): 1,
        ("Playing an S3 recording back", "python"): 1,
        ("Command-line tool", "bash"): 2,
        ("Reliability", "python"): 1,
        ("Whole-call recording", "python"): 1,
        ("Why a response was slow", "python"): 1,
        ("Why a response was slow", "sql"): 1,
    }
)
CLI = "pipecat-audio-capture"
# A call short enough for a test: the greeting the quick start sends, one exchange.
QUICK_START_SCRIPT = CallScript(
    greeting=BotLine(("How can I help you today?",)),
    exchanges=(
        Exchange(
            user=UserLine("Perfect thank you goodbye"),
            bot=BotLine(("You are welcome.", "Goodbye!")),
        ),
    ),
)
QUICK_START_SPEED = 2.0
QUICK_START_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README.

    Parameters:
        tag: Its info string (``python``, ``bash``, ...), empty when untagged.
        code: Its text.
        heading: The nearest heading above it, without the ``#``s.
        line: The README line its code starts on (1-based).
        paragraph: The text between the previous block (or heading) and this one.
    """

    tag: str
    code: str
    heading: str
    line: int
    paragraph: str


def readme_blocks() -> list[Block]:
    """Every fenced code block of README.md, in order."""
    blocks: list[Block] = []
    heading = ""
    prose: list[str] = []
    fence: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if fence is None:
            if line.startswith("```"):
                fence = (line[3:].strip(), number + 1, [])
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
                prose = []
            else:
                prose.append(line)
        elif line.startswith("```"):
            tag, start, code = fence
            blocks.append(Block(tag, "\n".join(code) + "\n", heading, start, "\n".join(prose)))
            fence = None
            prose = []
        else:
            fence[2].append(line)
    assert fence is None, f"README.md: the block opened on line {fence[1] - 1} is never closed"
    return blocks


def blocks_under(heading: str, tag: str) -> list[Block]:
    """The blocks with ``tag`` under ``heading``, in order."""
    return [block for block in readme_blocks() if (block.heading, block.tag) == (heading, tag)]


def compiled(block: Block, root: Path | None = None) -> CodeType:
    """Compile a python block as README.md, at its own line numbers, so a failure points at the
    README line; ``/var/`` paths are moved under ``root``."""
    code = block.code
    if root is not None:
        code = code.replace('"/var/', f'"{root}/var/')
    return compile(
        "\n" * (block.line - 1) + code,
        str(README),
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
    )


async def run_python(block: Block, namespace: dict[str, Any], root: Path | None = None) -> None:
    """Run a python block in ``namespace``, with ``/var/`` paths moved under ``root``."""
    result = eval(compiled(block, root), namespace)
    if inspect.iscoroutine(result):
        await result
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            outcome = value()
            if inspect.iscoroutine(outcome):
                await outcome


def cli_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh shell with the package installed: our variables unset and
    the interpreter's ``bin`` folder first on ``PATH``."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {DB_ENV, DSN_ENV, TOKEN_ENV, "COLUMNS"}
    }
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return {**environ, **(extra or {})}


# The README as a whole.


def test_every_block_is_tagged_with_a_known_tag() -> None:
    untagged = [(block.line, block.tag) for block in readme_blocks() if block.tag not in TAGS]
    assert untagged == []


def test_every_python_bash_and_sql_block_is_run_by_a_test_here() -> None:
    found = Counter(
        (block.heading, block.tag) for block in readme_blocks() if block.tag in RUN_TAGS
    )
    assert found == CLAIMED


def test_defaults_section_names_every_default_with_its_value() -> None:
    section = README.read_text().split("\n## Defaults\n", 1)[1].split("\n## ", 1)[0]
    names = sorted(name for name in vars(defaults) if name.isupper())
    assert names
    assert [name for name in names if f"`{name}" not in section] == []
    stated = re.findall(r"`([A-Z][A-Z0-9_]+) = ([^`]+)`", section)
    assert stated
    for name, value in stated:
        assert ast.literal_eval(value) == getattr(defaults, name), name


# Quick start: a real call through the quick start's run_bot, with the demo's scripted ends.


class ScriptedCallTransport(BaseTransport):
    """The demo's microphone and speaker as one transport, whose client connects at once and
    hangs up when the script is done."""

    def __init__(self, services: CallServices) -> None:
        super().__init__()
        self._services = services
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")

    def input(self) -> Any:
        return self._services.microphone

    def output(self) -> Any:
        return self._services.speaker

    async def run_client(self) -> None:
        await self._call_event_handler("on_client_connected", "caller")
        await self._services.microphone.finished.wait()
        await self._call_event_handler("on_client_disconnected", "caller")


@dataclass
class QuickStartCall:
    """What the quick start left behind: the folder it ran in and what it printed."""

    folder: Path
    session_id: str
    output: str


async def _run_quick_start(folder: Path) -> QuickStartCall:
    [block] = blocks_under("Quick start", "python")
    namespace: dict[str, Any] = {"__name__": "quick_start"}
    await run_python(block, namespace)
    services = build_call_services(script=QUICK_START_SCRIPT, speed=QUICK_START_SPEED)
    transport = ScriptedCallTransport(services)
    printed: list[str] = []
    namespace["print"] = lambda *args: printed.append(" ".join(map(str, args)))
    bot = namespace["run_bot"](
        transport,
        services.stt,
        services.user_aggregator,
        services.llm,
        services.tts,
        services.assistant_aggregator,
    )
    async with asyncio.timeout(QUICK_START_TIMEOUT_S):
        await asyncio.gather(bot, transport.run_client())
    match = re.fullmatch(r"session (\S+): (\d+) of (\d+) segments stored", printed[-1])
    assert match, printed
    return QuickStartCall(folder, match[1], "\n".join(printed))


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> QuickStartCall:
    folder = tmp_path_factory.mktemp("quick-start")
    with contextlib.chdir(folder):
        return asyncio.run(_run_quick_start(folder))


@pytest.fixture
def quick_start_copy(quick_start: QuickStartCall, tmp_path: Path) -> QuickStartCall:
    """A copy of the quick start's folder, for a test that changes it."""
    folder = tmp_path / "bot"
    shutil.copytree(quick_start.folder, folder)
    return QuickStartCall(folder, quick_start.session_id, quick_start.output)


async def test_quick_start_records_every_turn_into_wavs_and_the_sqlite_index(
    quick_start: QuickStartCall,
) -> None:
    recordings = quick_start.folder / "recordings"
    wavs = sorted((recordings / quick_start.session_id).glob("*.wav"))
    assert quick_start.output.endswith(f": {len(wavs)} of {len(wavs)} segments stored")
    assert len(wavs) >= 3  # the greeting, the caller, the answer
    index = SQLiteAudioMetaStorage(recordings / "index.sqlite3")
    try:
        call_log = await index.call_log(quick_start.session_id)
    finally:
        await index.close()
    assert [turn.role for turn in call_log] == ["assistant", "user", "assistant"]
    assert all(turn.audio_url for turn in call_log)
    assert call_log[1].text == "Perfect thank you goodbye"


def test_the_cli_reads_the_quick_starts_index_by_default(quick_start: QuickStartCall) -> None:
    result = subprocess.run(
        [CLI, "show", quick_start.session_id],
        cwd=quick_start.folder,
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert "Perfect thank you goodbye" in result.stdout


# Bash blocks: the command-line tool, in the quick start's folder.


def test_command_line_block_runs_line_by_line_on_the_quick_starts_recordings(
    quick_start_copy: QuickStartCall, tmp_path: Path
) -> None:
    block = blocks_under("Command-line tool", "bash")[0]
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [line for line in block.code.splitlines() if line.strip()]
    assert lines
    for number, line in enumerate(lines, start=block.line):
        command = line.replace("SESSION_ID", quick_start_copy.session_id).replace(
            "DIR", shlex.quote(str(spool))
        )
        words = shlex.split(command, comments=True)
        if words[:2] == [CLI, "serve"]:
            _serve_lists_the_call(quick_start_copy, words[2:])
            continue
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=quick_start_copy.folder,
            env=cli_environment(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        assert result.returncode == 0, f"README.md:{number}: {line}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"README.md:{number}"


def test_moved_recordings_block_exports_the_call_from_its_new_place(
    quick_start_copy: QuickStartCall, tmp_path: Path
) -> None:
    block = blocks_under("Command-line tool", "bash")[1]
    moved = tmp_path / "moved"
    for number, line in enumerate(block.code.splitlines(), start=block.line):
        command = line.replace("/tmp/moved", shlex.quote(str(moved))).replace(
            "SESSION_ID", quick_start_copy.session_id
        )
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=quick_start_copy.folder,
            env=cli_environment(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        assert result.returncode == 0, f"README.md:{number}: {line}\n{result.stderr}"
    assert not (quick_start_copy.folder / "recordings").exists()
    exported = sorted(path.name for path in (quick_start_copy.folder / "call").glob("*.wav"))
    # Each of the three turns, and the whole call in stereo.
    assert len(exported) == 4 and "call.wav" in exported, exported


def _serve_lists_the_call(call: QuickStartCall, args: list[str]) -> None:
    with (
        running_review(call.folder, *args) as review,
        urllib.request.urlopen(review.url, timeout=CLI_TIMEOUT_S) as response,
    ):
        page = response.read().decode()
    assert call.session_id in page


# Python blocks that continue a bot's code.


@pytest.fixture
async def bot_scope(tmp_path: Path) -> Any:
    """The names a bot has in scope after the quick start's setup, on a SQLite index in
    ``tmp_path``; closed afterwards."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    index = SQLiteAudioMetaStorage(recordings / "index.sqlite3")
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(LLMContext())
    scope: dict[str, Any] = {
        "__name__": "bot",
        "session_id": new_id(),
        "turn_ids": TurnIds(),
        "index": index,
        "storage": CompositeAudioStorage(files=LocalAudioStorage(recordings), metadata=index),
        "user_aggregator": user_aggregator,
        "assistant_aggregator": assistant_aggregator,
    }
    yield scope
    await index.close()


def test_whole_call_block_builds_the_quick_starts_call_as_one_stereo_wav(
    quick_start_copy: QuickStartCall,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [block] = blocks_under("Whole-call recording", "python")
    monkeypatch.chdir(quick_start_copy.folder)

    exec(compiled(block), {"__name__": "__main__"})

    with (quick_start_copy.folder / "call.wav").open("rb") as file:
        header = read_wav_header(file)
    assert header.num_channels == 2
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(rf"call\.wav: \d+\.\d s, {header.sample_rate} Hz stereo", last), last


def test_latency_block_stores_and_reads_back_a_breakdown(tmp_path: Path) -> None:
    [block] = blocks_under("Why a response was slow", "python")
    script = tmp_path / "example.py"
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")

    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("bot turn ")]
    assert "endpointing 200 ms" in line
    assert "slowest: " in line


async def test_turn_id_contract_blocks_attach_a_recorder_and_claim_turns(
    bot_scope: dict[str, Any], tmp_path: Path
) -> None:
    attach, claim = blocks_under("The turn-id contract", "python")
    await run_python(attach, bot_scope, tmp_path)
    assert isinstance(bot_scope["transcripts"], TranscriptRecorder)

    turn_ids: TurnIds = bot_scope["turn_ids"]
    t_start = turn_ids.now()
    user_turn = turn_ids.start_turn("user", at=t_start)
    bot_turn = turn_ids.start_turn("bot", at=t_start + 0.5)
    bot_scope.update(t_start=t_start, t_end=t_start + 2.0)
    first, second = (line for line in claim.code.splitlines() if line.strip())
    await run_python(Block("python", first + "\n", claim.heading, claim.line, ""), bot_scope)
    assert bot_scope["turn_id"] == user_turn
    await run_python(Block("python", second + "\n", claim.heading, claim.line + 1, ""), bot_scope)
    assert bot_scope["turn_id"] == bot_turn


def test_every_stats_counter_is_in_the_counters_tables() -> None:
    text = README.read_text()
    tables = text[text.index("**Counters.**") : text.index("## Indexing in PostgreSQL")]
    counters = [*fields(ProcessorStats), *fields(SessionCaptureStats)]
    missing = [field.name for field in counters if f"| `{field.name}` |" not in tables]
    assert missing == []


async def test_testing_your_bot_block_passes_as_a_test() -> None:
    [block] = blocks_under("Testing your bot", "python")
    namespace: dict[str, Any] = {"__name__": "test_my_bot"}
    await run_python(block, namespace)
    assert any(name.startswith("test_") for name in namespace)


async def test_postgres_block_migrates_records_and_closes_its_pool(
    bot_scope: dict[str, Any], pg_schema: PgSchema, tmp_path: Path
) -> None:
    [block] = blocks_under("Indexing in PostgreSQL", "python")
    bot_scope["dsn"] = pg_schema.dsn
    await run_python(block, bot_scope, tmp_path)
    assert bot_scope["pool"].closed
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as conn:
        cursor = await conn.execute("SELECT count(*) FROM session_audio_segments")
        assert await cursor.fetchone() == (0,)


async def test_reliability_block_spools_recovers_and_replays(
    bot_scope: dict[str, Any], pg_schema: PgSchema, tmp_path: Path
) -> None:
    [block] = blocks_under("Reliability", "python")
    pg = await PostgresAudioMetaStorage.connect(pg_schema.dsn)
    bot_scope["pg"] = pg
    try:
        await run_python(block, bot_scope, tmp_path)
        report = bot_scope["report"]
        assert isinstance(report, ReplayReport)
        assert (report.errors, report.rejected) == ([], 0)
        await bot_scope["capture"].close()
        await bot_scope["transcripts"].close()
    finally:
        await pg.close()


@pytest.fixture
def signing_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A generated service-account key as ``GOOGLE_APPLICATION_CREDENTIALS``: it signs URLs
    locally, with no network."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "test-key",
                "private_key": pem,
                "client_email": "signer@test-project.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    return path


async def test_playback_block_signs_a_gs_url_and_finds_a_local_file(
    signing_key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [block] = blocks_under("Playing a recording back", "python")
    monkeypatch.chdir(tmp_path)
    session_id = new_id()
    meta = make_segment(session_id)
    wav = tmp_path / "recordings" / session_id / f"{meta.segment_id}.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF")
    meta = type(meta)(**{**meta.__dict__, "audio_url": wav.as_uri()})
    namespace: dict[str, Any] = {"__name__": "playback", "meta": meta}
    await run_python(block, namespace)
    assert namespace["url"] == wav.as_uri()


async def test_gcs_production_block_stores_in_the_emulator_and_indexes_in_postgres(
    emulator_env: str,
    bucket_name: str,
    pg_schema: PgSchema,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [block] = blocks_under("Production: audio in a bucket, index in PostgreSQL", "python")
    monkeypatch.setenv("DATABASE_URL", pg_schema.dsn)
    monkeypatch.setenv("RECORDINGS_BUCKET", bucket_name)
    namespace: dict[str, Any] = {"__name__": "worker", "session_id": new_id()}
    await run_python(block, namespace)
    assert namespace["pool"].closed
    assert namespace["capture"].stats.recorded == 0
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as conn:
        cursor = await conn.execute("SELECT count(*) FROM session_audio_segments")
        assert await cursor.fetchone() == (0,)  # migrated by the block


async def test_s3_production_block_checks_the_bucket_and_indexes_in_postgres(
    s3_env: str,
    s3_client: "S3Client",
    s3_bucket: str,
    pg_schema: PgSchema,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [block] = blocks_under("Production: audio in an S3 bucket, index in PostgreSQL", "python")
    monkeypatch.setenv("DATABASE_URL", pg_schema.dsn)
    monkeypatch.setenv("RECORDINGS_BUCKET", s3_bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_env)
    namespace: dict[str, Any] = {"__name__": "worker", "session_id": new_id()}
    await run_python(block, namespace)
    assert namespace["pool"].closed
    assert namespace["capture"].stats.recorded == 0
    # check() wrote its probe to the emulator and removed that very version again.
    assert s3_versions(s3_client, s3_bucket) == []
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as conn:
        cursor = await conn.execute("SELECT count(*) FROM session_audio_segments")
        assert await cursor.fetchone() == (0,)  # migrated by the block


async def test_s3_playback_block_presigns_urls_that_play_from_the_emulator(
    s3_env: str,
    s3_client: "S3Client",
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [block] = blocks_under("Playing an S3 recording back", "python")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env)
    session_id = new_id()
    meta = make_segment(session_id)
    key = f"calls/{session_id}/{meta.segment_id}.wav"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"RIFF")
    meta = type(meta)(**{**meta.__dict__, "audio_url": f"s3://{s3_bucket}/{key}"})
    namespace: dict[str, Any] = {"__name__": "playback", "meta": meta}
    monkeypatch.chdir(tmp_path)
    await run_python(block, namespace)
    assert namespace["url"].startswith(f"{s3_env}/{s3_bucket}/{key}?")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(namespace["url"], timeout=10) as response:
        assert response.read() == b"RIFF"


# SQL blocks.


async def _index_a_call(index: PostgresAudioMetaStorage | SQLiteAudioMetaStorage) -> str:
    """Write a call of two turns (the bot's cut short) to ``index``, close it, return its id."""
    session_id = new_id()
    user = make_segment(session_id, speaker="user", start_ms=0, duration_ms=2000)
    bot = make_segment(
        session_id,
        speaker="bot",
        start_ms=2300,
        duration_ms=1500,
        interrupted=True,
        unplayed_ms=800,
    )
    try:
        for segment in (user, bot):
            await index.save_metadata(session_id, segment)
        await index.save_transcript(
            make_transcript(session_id, user.turn_id, "user", "Where is my order", at_ms=0)
        )
        await index.save_transcript(
            make_transcript(
                session_id, bot.turn_id, "assistant", "It left", at_ms=2300, interrupted=True
            )
        )
        await index.save_turn_latency(make_latency(session_id, bot.turn_id, bot_ms=2300))
    finally:
        await index.close()
    return session_id


def _sql_blocks() -> list[Block]:
    return blocks_under("Example queries", "sql") + blocks_under("Why a response was slow", "sql")


def _is_postgres_only(block: Block) -> bool:
    return "(PostgreSQL)" in block.paragraph


async def test_every_sql_block_runs_on_postgres_against_a_recorded_call(
    pg_schema: PgSchema,
) -> None:
    session_id = await _index_a_call(await PostgresAudioMetaStorage.connect(pg_schema.dsn))
    async with await psycopg.AsyncConnection.connect(pg_schema.dsn) as conn:
        for block in _sql_blocks():
            cursor = await conn.execute(block.code, {"sid": session_id})
            rows = await cursor.fetchall()
            assert rows, f"README.md:{block.line}: no rows"


async def test_sql_blocks_not_marked_postgresql_run_on_sqlite_too(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    session_id = await _index_a_call(SQLiteAudioMetaStorage(path))
    portable = [b for b in _sql_blocks() if not _is_postgres_only(b)]
    assert portable
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for block in portable:
            query = block.code.replace("%(sid)s", "?")
            params = (session_id,) * query.count("?")
            rows = conn.execute(query, params).fetchall()
            assert rows, f"README.md:{block.line}: no rows"


# Shell blocks: checked, not run.


def _sh_commands() -> Iterator[tuple[int, list[str]]]:
    for block in readme_blocks():
        if block.tag == "sh":
            for offset, line in enumerate(block.code.splitlines()):
                if line.strip():
                    yield block.line + offset, shlex.split(line, comments=True)


def test_sh_blocks_install_only_extras_that_exist() -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    installs = [
        (number, words) for number, words in _sh_commands() if words[:2] == ["pip", "install"]
    ]
    assert installs
    for number, words in installs:
        for requirement in words[2:]:
            if requirement == "-e":
                continue
            named = re.fullmatch(
                r"(?:pipecat-audio-capture|\.)(?:\[([a-z0-9,]+)\])?(?: @ (\S+))?", requirement
            )
            assert named, f"README.md:{number}: {requirement}"
            assert set(filter(None, (named[1] or "").split(","))) <= extras, f"README.md:{number}"
            if named[2]:
                assert named[2] == f"git+{urls['Repository']}", f"README.md:{number}"


def test_sh_blocks_name_make_targets_and_commands_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    commands = [(number, words) for number, words in _sh_commands() if words[0] in {"make", CLI}]
    assert commands
    for number, words in commands:
        if words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.MULTILINE), (
                f"README.md:{number}"
            )
        else:
            result = subprocess.run(
                [CLI, words[1], "--help"],
                env=cli_environment(),
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_S,
            )
            assert result.returncode == 0, f"README.md:{number}: {result.stderr}"
