"""examples/production_bot.py builds its whole pipeline offline, wired as the README documents.

The example is not part of the package, so nothing else imports it; this test keeps it from going
stale. It loads the example from its path, builds one call's bot with fake keys while every socket
connect, bind and DNS lookup raises, and checks where the recorder sits and what it writes to.
Links with no public accessor (processor to capture, recorder to store, aggregator event
handlers) are read from private attributes: what is under test is the wiring itself.
"""

import importlib.util
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService
from psycopg_pool import AsyncConnectionPool

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    CompositeAudioStorage,
    PlaybackTap,
    SessionAudioCapture,
    TranscriptRecorder,
)
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "production_bot.py"

ENV = {
    "OPENAI_API_KEY": "test",
    # A host name, not an address: libpq connects from C, out of the guard's reach, but psycopg
    # resolves host names through Python's getaddrinfo first, which the guard catches.
    "DATABASE_URL": "postgresql://bot@db.invalid/calls",
    "RECORDINGS_BUCKET": "test-recordings",
    "BOT_PORT": "18765",
}

pytestmark = pytest.mark.asyncio(loop_scope="module")

TRANSCRIPT_EVENTS = {
    LLMUserAggregator: ("on_user_turn_started", "on_user_turn_stopped"),
    LLMAssistantAggregator: ("on_assistant_turn_started", "on_assistant_turn_stopped"),
}


@dataclass
class Built:
    """One call's bot, built the way the example's worker builds it."""

    example: ModuleType
    settings: Any
    pool: AsyncConnectionPool[Any]
    client: storage.Client
    recordings: Any
    bot: Any
    network_attempts: list[str]


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("production_bot_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: dataclasses look their module up while the
    # module is still executing.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _no_network() -> Iterator[list[str]]:
    """Make every outbound connect, listening bind and DNS lookup raise, and list the attempts.

    The list catches an attempt whose exception a library swallowed (or made in a thread).
    """
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: object, **kwargs: object) -> Any:
            attempts.append(f"{what}{args}")
            raise OSError(f"network access during the build: {what}")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex", "bind"):
            patch.setattr(socket.socket, name, refuse(f"socket.{name}"))
        patch.setattr(socket, "create_connection", refuse("create_connection"))
        patch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def built() -> AsyncIterator[Built]:
    # Async, so the build runs inside an event loop as it does in the worker.
    with _no_network() as attempts:
        example = _load_example()
        settings = example.BotSettings.from_env(ENV)
        pool = example.create_pool(settings)
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        recordings = example.build_recordings(settings, pool, gcs_client=client)
        bot = example.build_call(settings, recordings)
    try:
        yield Built(example, settings, pool, client, recordings, bot, attempts)
    finally:
        sys.modules.pop("production_bot_example", None)


def _one(processors: list[FrameProcessor], kind: type) -> FrameProcessor:
    found = [p for p in processors if isinstance(p, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in the pipeline, found {found}"
    return found[0]


async def test_building_the_bot_touches_no_network(built: Built) -> None:
    assert built.network_attempts == []
    assert built.pool.closed  # created, never opened: nothing has tried to connect


async def test_audio_processor_sits_between_tts_and_transport_output(built: Built) -> None:
    processors = built.bot.pipeline.processors
    tts = _one(processors, OpenAITTSService)
    recorder = _one(processors, AudioCaptureProcessor)
    output = built.bot.transport.output()
    at = processors.index(recorder)
    assert processors[at - 1] is tts
    assert processors[at + 1] is output
    assert isinstance(processors[at + 2], PlaybackTap), "bot playback is confirmed"
    # The links frames actually follow, not only the list order.
    assert tts.next is recorder and recorder.next is output


async def test_transcripts_are_attached_to_both_aggregators(built: Built) -> None:
    processors = built.bot.pipeline.processors
    transcripts = built.bot.transcripts
    assert isinstance(transcripts, TranscriptRecorder)
    for kind, events in TRANSCRIPT_EVENTS.items():
        aggregator = _one(processors, kind)
        for event in events:
            handlers = aggregator._event_handlers[event].handlers
            assert any(getattr(h, "__self__", None) is transcripts for h in handlers), (
                f"{event} of {kind.__name__} has no TranscriptRecorder handler"
            )


async def test_audio_and_transcripts_share_turn_ids_and_session(built: Built) -> None:
    recorder = _one(built.bot.pipeline.processors, AudioCaptureProcessor)
    assert isinstance(recorder, AudioCaptureProcessor)
    capture = built.bot.capture
    assert isinstance(capture, SessionAudioCapture)
    assert recorder._collector is capture
    assert built.bot.transcripts._turn_ids is recorder.turn_ids
    assert capture.session_id == built.bot.session_id
    assert built.bot.transcripts._session_id == built.bot.session_id


async def test_storage_is_gcs_files_with_a_postgres_index(built: Built) -> None:
    recordings = built.recordings
    composite = built.bot.capture.storage
    assert composite is recordings.storage
    assert isinstance(composite, CompositeAudioStorage)

    files = composite.files
    assert files is recordings.files
    assert isinstance(files, GCSAudioStorage)
    assert files.bucket_name == ENV["RECORDINGS_BUCKET"]
    assert files.prefix == "calls/"
    assert files._client is built.client

    index = composite.metadata
    assert index is recordings.index
    assert isinstance(index, PostgresAudioMetaStorage)
    assert index._pool is built.pool
    # Transcripts go to the index itself, as in the README's PostgreSQL recipe.
    assert built.bot.transcripts._store is index


async def test_settings_come_from_the_environment(built: Built) -> None:
    settings = built.settings
    assert settings.openai_api_key == "test"
    assert settings.database_url == ENV["DATABASE_URL"]
    assert settings.port == 18765
    assert settings.spool_dir is None
    with pytest.raises(ValueError, match="OPENAI_API_KEY, RECORDINGS_BUCKET"):
        built.example.BotSettings.from_env({"DATABASE_URL": ENV["DATABASE_URL"]})


async def test_spool_dir_goes_to_the_capture_and_the_transcripts(
    built: Built, tmp_path: Path
) -> None:
    example = built.example
    settings = example.BotSettings.from_env({**ENV, "RECORDINGS_SPOOL_DIR": str(tmp_path)})
    with _no_network() as attempts:
        bot = example.build_call(settings, built.recordings)
    assert attempts == []
    assert bot.session_id != built.bot.session_id  # one session per call
    assert bot.capture.spool.root == tmp_path.resolve()
    assert bot.transcripts._spool.root == tmp_path.resolve()
    assert list(tmp_path.iterdir()) == []  # the folder is written only when storage fails
