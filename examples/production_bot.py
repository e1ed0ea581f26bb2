"""A production voice bot: every speaking turn of every call goes to GCS, indexed in PostgreSQL.

The bot is a cascaded Pipecat 1.14 pipeline with services that need nothing beyond
``pipecat-ai``'s base install: OpenAI speech-to-text, LLM and text-to-speech, Silero VAD with
Pipecat's default user turn strategies, and Pipecat's websocket server transport with its
protobuf serializer (the wire format of Pipecat's client SDKs)::

    transport.input() -> STT -> user aggregator -> LLM -> TTS -> AudioCaptureProcessor
        -> transport.output() -> its PlaybackTap -> assistant aggregator

Each turn becomes ``gs://$RECORDINGS_BUCKET/$RECORDINGS_PREFIX{session_id}/{segment_id}.wav``
with a row in ``session_audio_segments``; the turn's transcript goes to ``session_transcripts``
with the same ``turn_id``. Read a call back with
``pipecat-audio-capture show SESSION_ID --dsn "$DATABASE_URL"``.

Run::

    pip install 'pipecat-audio-capture[gcs,postgres]'
    export OPENAI_API_KEY=sk-... DATABASE_URL=postgresql://bot@db/calls RECORDINGS_BUCKET=my-recs
    python examples/production_bot.py

Environment:

- ``OPENAI_API_KEY``, ``DATABASE_URL``, ``RECORDINGS_BUCKET``: required.
- ``RECORDINGS_PREFIX``: folder inside the bucket (``calls/``).
- ``RECORDINGS_SPOOL_DIR``: local folder that keeps the turns GCS or PostgreSQL could not take
  during an outage; they are delivered when the worker next starts. Without it they are lost
  (and logged).
- ``BOT_HOST``, ``BOT_PORT``: where the websocket server listens (``localhost``, ``8765``); set
  ``BOT_HOST=0.0.0.0`` in a container.
- ``GOOGLE_APPLICATION_CREDENTIALS``: a service-account key file, read by Google's client; on
  Cloud Run, GKE or Compute Engine leave it unset to use the attached service account.
- ``PIPECAT_ALLOWED_ORIGINS``: browser origins allowed to connect, read by Pipecat's transport.

The client sends 16 kHz mono 16-bit PCM and plays 24 kHz audio back (OpenAI TTS's only rate).
Pipecat's websocket server serves one client at a time, so a worker runs one call at a time:
each call gets a new pipeline, a new session id and a new server on the same port. A client that
connects while the previous call is still closing is turned away with close code 1013 (try again
later). Run as many workers as calls you want at once; they share the bucket and the database.
"""

import asyncio
import os
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import storage as gcs
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import BaseTransport
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.workers.runner import WorkerRunner
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import ServerConnection

from pipecat_audio_capture import (
    AudioCaptureProcessor,
    CompositeAudioStorage,
    SegmentStorage,
    SessionAudioCapture,
    TranscriptRecorder,
    TranscriptStore,
    TurnIds,
    replay_spool,
)
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.postgres import PostgresAudioMetaStorage

USER_SAMPLE_RATE = 16000
"""Rate of the caller's audio: Silero VAD and the smart-turn model work at 16 kHz."""

BOT_SAMPLE_RATE = 24000
"""Rate of the bot's audio: OpenAI TTS produces 24 kHz PCM only."""

POOL_OPEN_TIMEOUT_S = 10.0
"""Longest the worker waits at startup for its first PostgreSQL connection."""

SYSTEM_PROMPT = (
    "You are the voice assistant of Acme's customer line. Everything you write is spoken aloud: "
    "answer in one or two short sentences of plain text, with no lists, markdown or emoji."
)

GREETING = "Hi, thanks for calling Acme. How can I help?"


@dataclass(frozen=True)
class BotSettings:
    """Keys and settings of the bot worker, normally read from the environment.

    Parameters:
        openai_api_key: Key of the OpenAI STT, LLM and TTS services.
        database_url: PostgreSQL DSN or URI of the recordings index.
        recordings_bucket: GCS bucket the WAV files go to.
        recordings_prefix: Folder inside the bucket.
        spool_dir: Folder for the turns storage could not take, or None to lose them.
        host: Address the websocket server binds.
        port: Port the websocket server listens on.
    """

    openai_api_key: str
    database_url: str
    recordings_bucket: str
    recordings_prefix: str = "calls/"
    spool_dir: Path | None = None
    host: str = "localhost"
    port: int = 8765

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "BotSettings":
        """Read the settings from environment variables (see the module docstring).

        Raises:
            ValueError: If a required variable is missing or empty, or ``BOT_PORT`` is not a
                port number.
        """
        required = ("OPENAI_API_KEY", "DATABASE_URL", "RECORDINGS_BUCKET")
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ValueError(f"set the environment variables {', '.join(missing)}")
        port_text = env.get("BOT_PORT", str(cls.port))
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"BOT_PORT must be a port number, got {port_text!r}")
        spool_dir = env.get("RECORDINGS_SPOOL_DIR")
        return cls(
            openai_api_key=env["OPENAI_API_KEY"],
            database_url=env["DATABASE_URL"],
            recordings_bucket=env["RECORDINGS_BUCKET"],
            recordings_prefix=env.get("RECORDINGS_PREFIX", cls.recordings_prefix),
            spool_dir=Path(spool_dir) if spool_dir else None,
            host=env.get("BOT_HOST", cls.host),
            port=int(port_text),
        )


@dataclass(frozen=True)
class Recordings:
    """Where recordings go; built once per worker and shared by all its calls.

    Parameters:
        files: The bucket the WAV files are uploaded to.
        index: The PostgreSQL index of segments and transcripts.
        storage: Audio to ``files``, metadata to ``index``: what each call's capture writes to.
    """

    files: GCSAudioStorage
    index: PostgresAudioMetaStorage
    storage: CompositeAudioStorage


@dataclass
class Bot:
    """One call: its pipeline, the worker that runs it, and the recorders to close after it.

    Parameters:
        session_id: UUID of the call, in every object name and row it records.
        transport: The call's transport.
        pipeline: The call's pipeline.
        worker: Runs the pipeline.
        capture: Writes the call's segments; close it after the worker finishes.
        transcripts: Writes the call's transcript rows; close it after the worker finishes.
    """

    session_id: str
    transport: BaseTransport
    pipeline: Pipeline
    worker: PipelineWorker
    capture: SessionAudioCapture
    transcripts: TranscriptRecorder


def create_pool(settings: BotSettings) -> AsyncConnectionPool[Any]:
    """Create the worker's PostgreSQL pool, not yet open (opening it connects)."""
    return AsyncConnectionPool(settings.database_url, min_size=1, max_size=4, open=False)


def build_recordings(
    settings: BotSettings, pool: AsyncConnectionPool[Any], *, gcs_client: gcs.Client | None = None
) -> Recordings:
    """Build the storage as the README's production recipe does; makes no network call.

    Args:
        settings: The bucket and prefix.
        pool: The PostgreSQL pool; it may still be closed.
        gcs_client: A ready Google Cloud Storage client; when None, one is built on first use
            from Application Default Credentials.
    """
    files = GCSAudioStorage(
        bucket=settings.recordings_bucket, prefix=settings.recordings_prefix, client=gcs_client
    )
    index = PostgresAudioMetaStorage(pool)
    return Recordings(
        files=files, index=index, storage=CompositeAudioStorage(files=files, metadata=index)
    )


def create_transport(settings: BotSettings) -> SingleClientWebsocketServerTransport:
    """Create the websocket server of one call; it listens only once its pipeline starts."""
    return SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(), audio_in_enabled=True, audio_out_enabled=True
        ),
        host=settings.host,
        port=settings.port,
    )


def build_bot(
    *,
    session_id: str,
    transport: BaseTransport,
    storage: SegmentStorage,
    transcript_store: TranscriptStore,
    settings: BotSettings,
) -> Bot:
    """Build one call's pipeline, recorded turn by turn. Makes no network call.

    Args:
        session_id: UUID of the call.
        transport: The call's transport; ``AudioCaptureProcessor`` goes right before its
            ``output()``.
        storage: Where the call's WAV files and their metadata go.
        transcript_store: Where the call's transcript rows go.
        settings: The OpenAI key and the spool folder.
    """
    stt = OpenAISTTService(api_key=settings.openai_api_key)
    llm = OpenAILLMService(
        api_key=settings.openai_api_key,
        settings=OpenAILLMService.Settings(system_instruction=SYSTEM_PROMPT),
    )
    tts = OpenAITTSService(api_key=settings.openai_api_key)
    # Pipecat's default user turn strategies (VAD or transcript starts a turn, the bundled
    # smart-turn model ends it) need only the VAD here.
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )

    # One TurnIds for both sides is what gives a transcript row its audio's turn_id.
    turn_ids = TurnIds()
    capture = SessionAudioCapture(session_id, storage, spool_dir=settings.spool_dir)
    transcripts = TranscriptRecorder(
        session_id, turn_ids, store=transcript_store, spool_dir=settings.spool_dir
    )
    transcripts.attach(user_aggregator, assistant_aggregator)

    recorder = AudioCaptureProcessor(capture, turn_ids)
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            llm,
            tts,
            # Sees the caller's audio, the TTS audio, the turn frames and interruptions, and
            # cuts a barged-in reply at what the caller actually heard.
            recorder,
            transport.output(),
            recorder.playback_tap(),  # bot segments hold what the transport wrote
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=USER_SAMPLE_RATE, audio_out_sample_rate=BOT_SAMPLE_RATE
        ),
        conversation_id=session_id,
    )
    return Bot(
        session_id=session_id,
        transport=transport,
        pipeline=pipeline,
        worker=worker,
        capture=capture,
        transcripts=transcripts,
    )


def build_call(settings: BotSettings, recordings: Recordings) -> Bot:
    """Build the next call's bot: a new session id, a new websocket server, the shared storage."""
    return build_bot(
        session_id=str(uuid.uuid4()),
        transport=create_transport(settings),
        storage=recordings.storage,
        transcript_store=recordings.index,
        settings=settings,
    )


async def serve_call(settings: BotSettings, recordings: Recordings, stop: asyncio.Event) -> None:
    """Run one call's pipeline until its caller hangs up, then flush its recordings.

    The recordings are flushed however the call ends: the caller hangs up, Pipecat's idle
    timeout cancels it (5 minutes without speech, counted from the start, so a worker that waits
    that long for a caller starts over with a new session), or ``stop`` is set.
    """
    bot = build_call(settings, recordings)
    session_id = bot.session_id
    caller: ServerConnection | None = None

    @bot.transport.event_handler("on_client_connected")
    async def _on_connected(_transport: BaseTransport, websocket: ServerConnection) -> None:
        nonlocal caller
        if caller is not None:
            # A client connecting after the caller hung up, before this server closes, would be
            # recorded under the caller's session id.
            await websocket.close(code=1013, reason="call ended, connect again")
            return
        caller = websocket
        logger.info(f"call {session_id}: caller connected from {websocket.remote_address}")
        await bot.worker.queue_frame(TTSSpeakFrame(GREETING))

    @bot.transport.event_handler("on_client_disconnected")
    async def _on_disconnected(_transport: BaseTransport, websocket: ServerConnection) -> None:
        if websocket is caller:
            # Cancel rather than end: audio still queued would never reach the caller, so the
            # bot's last turn is cut at what was played, as for a barge-in.
            await bot.worker.cancel(reason="caller hung up")

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(bot.worker)
    run = asyncio.create_task(runner.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            await runner.cancel(reason="worker shutting down")
        await run
    finally:
        stopping.cancel()
        stats = await bot.capture.close()
        await bot.transcripts.close()
    if caller is None:
        logger.debug(f"call {session_id}: no caller")
        return
    lost = stats.dropped + stats.failed + bot.transcripts.failed
    (logger.warning if lost else logger.info)(
        f"call {session_id} recorded: {stats.stored} of {stats.recorded} segments stored "
        f"({stats.bytes_stored} bytes), {stats.spooled} spooled, {stats.dropped} dropped, "
        f"{stats.failed} failed; transcripts {bot.transcripts.stored} stored, "
        f"{bot.transcripts.spooled} spooled, {bot.transcripts.failed} failed"
    )


async def serve(settings: BotSettings) -> None:
    """Prepare the storage, then serve calls one after another until SIGINT or SIGTERM.

    Raises:
        psycopg_pool.PoolTimeout: If PostgreSQL cannot be reached at startup.
        MigrationError: If the index cannot be created or upgraded.
        StorageConfigError: If the bucket is missing or the credentials may not write to it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    pool = create_pool(settings)
    await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
    try:
        # Every worker runs them at startup; an advisory lock makes concurrent runs take turns.
        recordings = build_recordings(settings, pool)
        applied = await recordings.index.run_migrations()
        logger.info(f"recordings index ready (migrations applied now: {applied or 'none'})")
        # Bad credentials or a missing bucket fail here, not on the first call's first turn.
        await recordings.files.check()
        # The spool folder appears with its first entry.
        if settings.spool_dir is not None and settings.spool_dir.exists():
            await replay_spool(settings.spool_dir, recordings.storage, recordings.index)
        while not stop.is_set():
            await serve_call(settings, recordings, stop)
    finally:
        await pool.close()


def main() -> None:
    """Read the settings from the environment and run the worker."""
    try:
        settings = BotSettings.from_env(os.environ)
    except ValueError as exc:
        raise SystemExit(f"production_bot: {exc}") from None
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
