"""A simulated voice-bot call: a real Pipecat pipeline with scripted ends, run offline.

The pipeline is what a cascaded voice bot runs::

    microphone -> STT -> user aggregator -> LLM -> TTS -> [recorder processors]
        -> speaker (transport.output()) -> [after-output processors] -> assistant aggregator

with Pipecat's own ``SileroVADAnalyzer`` in the user aggregator, its user turn strategies and
interruptions, and ``LLMContextAggregatorPair``. Only what the caller says and the bot answers is
scripted (see :mod:`.script` and :mod:`.services`).
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    AssistantTurnStoppedMessage,
    LLMAssistantAggregator,
    LLMContextAggregatorPair,
    LLMUserAggregator,
    LLMUserAggregatorParams,
    UserTurnStoppedMessage,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from pipecat_audio_capture.demo.script import (
    BOT_SAMPLE_RATE,
    DEFAULT_SCRIPT,
    USER_SAMPLE_RATE,
    CallScript,
    load_bot_audio,
    load_user_audio,
)
from pipecat_audio_capture.demo.services import (
    PlayedChunk,
    ScriptedLLM,
    ScriptedMicrophone,
    ScriptedSTTService,
    ScriptedTTSService,
    SimulatedSpeaker,
    SpokenUtterance,
)
from pipecat_audio_capture.errors import InvalidArgumentError, SimulatedCallTimeoutError

USER_SPEECH_TIMEOUT_S = 0.6
"""Pipecat's default pause after which ``SpeechTimeoutUserTurnStopStrategy`` ends the user turn."""

LLM_FIRST_TOKEN_S = 0.3
"""Time to first token of the scripted LLM, in call time."""

DEFAULT_TIMEOUT_S = 180.0
"""Longest a call may run (wall time) before it is cancelled as stuck."""

OnAggregators = Callable[[LLMUserAggregator, LLMAssistantAggregator], None]


class EventKind(StrEnum):
    """What a :class:`CallEvent` records, and who reported it."""

    UTTERANCE_STARTED = "utterance_started"
    """The simulated caller started speaking (ground truth, from the microphone)."""
    UTTERANCE_ENDED = "utterance_ended"
    """The simulated caller stopped speaking (ground truth)."""
    USER_TURN_STARTED = "user_turn_started"
    """The user aggregator's ``on_user_turn_started`` event."""
    USER_TURN_STOPPED = "user_turn_stopped"
    """The user aggregator's ``on_user_turn_stopped`` event (``text`` is the turn's content)."""
    ASSISTANT_TURN_STARTED = "assistant_turn_started"
    """The assistant aggregator's ``on_assistant_turn_started`` event."""
    ASSISTANT_TURN_STOPPED = "assistant_turn_stopped"
    """The assistant aggregator's ``on_assistant_turn_stopped`` event (text, interrupted)."""
    USER_STARTED_SPEAKING = "user_started_speaking"
    """``UserStartedSpeakingFrame`` pushed by the user aggregator."""
    USER_STOPPED_SPEAKING = "user_stopped_speaking"
    """``UserStoppedSpeakingFrame`` pushed by the user aggregator."""
    INTERRUPTION = "interruption"
    """``InterruptionFrame`` pushed by the user aggregator."""
    BOT_STARTED_SPEAKING = "bot_started_speaking"
    """``BotStartedSpeakingFrame`` pushed by the output transport."""
    BOT_STOPPED_SPEAKING = "bot_stopped_speaking"
    """``BotStoppedSpeakingFrame`` pushed by the output transport."""
    END_QUEUED = "end_queued"
    """The script finished and the ``EndFrame`` was queued."""


@dataclass
class CallEvent:
    """Something that happened during the call.

    Parameters:
        t: When, in seconds on the pipeline clock (wall time since the pipeline started; multiply
            by the call's speed for call time).
        kind: What happened.
        text: The transcript for turn-stopped events, the line for utterance events.
        interrupted: For ``ASSISTANT_TURN_STOPPED``, whether the turn was cut short.
    """

    t: float
    kind: EventKind
    text: str | None = None
    interrupted: bool | None = None


class _EventLog:
    """The events of one call, as its components report them."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def record(
        self,
        kind: EventKind,
        processor: FrameProcessor,
        *,
        text: str | None = None,
        interrupted: bool | None = None,
    ) -> None:
        """Record that ``kind`` happened now, on ``processor``'s pipeline clock."""
        self.add(CallEvent(processor.get_clock().get_time() / 1e9, kind, text, interrupted))

    def add(self, event: CallEvent) -> None:
        """Record an event timed by whoever reported it."""
        self.events.append(event)


@dataclass
class BotPlayback:
    """What the speaker played during one bot turn (``BotStarted`` to ``BotStoppedSpeakingFrame``).

    Parameters:
        started_at: When the bot started speaking (pipeline clock seconds).
        stopped_at: When it stopped, or None if the call ended first.
        audio: The TTS audio played, 16-bit mono PCM at ``sample_rate``. A chunk counts when its
            playing began inside the turn, so on a barge-in it includes the chunk cut mid-way.
        sample_rate: Sample rate of ``audio``.
    """

    started_at: float
    stopped_at: float | None
    audio: bytes
    sample_rate: int = BOT_SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        """Seconds of audio played."""
        return len(self.audio) / (2 * self.sample_rate)


@dataclass
class CallResult:
    """What happened in a simulated call.

    Parameters:
        speed: How many times faster than real time the call ran.
        events: Everything recorded, in time order.
        utterances: The caller's utterances as spoken (ground truth).
        bot_turns: What the speaker played, per bot turn.
    """

    speed: float
    events: list[CallEvent]
    utterances: list[SpokenUtterance]
    bot_turns: list[BotPlayback]

    def of(self, kind: EventKind) -> list[CallEvent]:
        """Return the events of one kind, in time order."""
        return [event for event in self.events if event.kind == kind]

    def call_time(self, t: float) -> float:
        """Convert a pipeline clock time to call time (what it would be at real-time speed)."""
        return t * self.speed


@dataclass
class SimulatedCall:
    """A built, not yet run, simulated call.

    Parameters:
        script: The call's script.
        speed: How many times faster than real time it runs.
        pipeline: The pipeline.
        worker: The pipeline worker that runs it.
        microphone: The input transport (the caller's microphone).
        speaker: The output transport.
        user_aggregator: The real ``LLMUserAggregator``.
        assistant_aggregator: The real ``LLMAssistantAggregator``.
    """

    script: CallScript
    speed: float
    pipeline: Pipeline
    worker: PipelineWorker
    microphone: ScriptedMicrophone
    speaker: SimulatedSpeaker
    user_aggregator: LLMUserAggregator
    assistant_aggregator: LLMAssistantAggregator
    _log: _EventLog = field(default_factory=_EventLog, repr=False)

    async def run(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> CallResult:
        """Run the call to its end and return what happened; a call runs once.

        The greeting is queued as a ``TTSSpeakFrame`` when the pipeline has started; an
        ``EndFrame`` is queued when the microphone reports the script finished, and the call ends
        when that ``EndFrame`` has gone through the pipeline.

        Args:
            timeout_s: Wall time after which a stuck call is cancelled.

        Raises:
            SimulatedCallTimeoutError: If the call did not end within ``timeout_s``.
        """
        worker = self.worker

        async def _greet(worker: PipelineWorker, frame: Frame) -> None:
            await worker.queue_frame(TTSSpeakFrame(self.script.greeting.text))

        # add_event_handler rather than Pipecat's unannotated @event_handler decorator, which
        # would leave the handler untyped.
        worker.add_event_handler("on_pipeline_started", _greet)

        async def hang_up() -> None:
            await self.microphone.finished.wait()
            self._log.record(EventKind.END_QUEUED, self.microphone)
            await worker.queue_frame(EndFrame())

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        hang_up_task = asyncio.create_task(hang_up())
        run_task = asyncio.create_task(runner.run())
        try:
            done, _ = await asyncio.wait({run_task}, timeout=timeout_s)
            if not done:
                logger.error(f"simulated call still running after {timeout_s} s, cancelling it")
                await runner.cancel(reason="simulated call timed out")
                await run_task
                raise SimulatedCallTimeoutError(
                    f"the simulated call did not end within {timeout_s} s"
                )
            run_task.result()
        finally:
            hang_up_task.cancel()
        return self._result()

    def _result(self) -> CallResult:
        events = list(self._log.events)
        for utterance in self.microphone.utterances:
            events.append(
                CallEvent(utterance.started_at, EventKind.UTTERANCE_STARTED, utterance.text)
            )
            if utterance.ended_at is not None:
                events.append(
                    CallEvent(utterance.ended_at, EventKind.UTTERANCE_ENDED, utterance.text)
                )
        events.sort(key=lambda event: event.t)
        return CallResult(
            speed=self.speed,
            events=events,
            utterances=list(self.microphone.utterances),
            bot_turns=_bot_turns(events, self.speaker.played),
        )


class _FrameEventObserver(BaseObserver):
    """Records the turn frames where they originate, with the time they were pushed."""

    def __init__(
        self, *, log: _EventLog, user_aggregator: LLMUserAggregator, speaker: SimulatedSpeaker
    ) -> None:
        super().__init__(observe_every_push=False)
        self._log = log
        self._user_aggregator = user_aggregator
        self._speaker = speaker

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        kind = self._kind(data.source, data.frame)
        if kind is not None:
            self._log.add(CallEvent(data.timestamp / 1e9, kind))

    def _kind(self, source: FrameProcessor, frame: Frame) -> EventKind | None:
        if source is self._user_aggregator:
            if isinstance(frame, UserStartedSpeakingFrame):
                return EventKind.USER_STARTED_SPEAKING
            if isinstance(frame, UserStoppedSpeakingFrame):
                return EventKind.USER_STOPPED_SPEAKING
            if isinstance(frame, InterruptionFrame):
                return EventKind.INTERRUPTION
        elif source is self._speaker:
            if isinstance(frame, BotStartedSpeakingFrame):
                return EventKind.BOT_STARTED_SPEAKING
            if isinstance(frame, BotStoppedSpeakingFrame):
                return EventKind.BOT_STOPPED_SPEAKING
        return None


def _bot_turns(events: Sequence[CallEvent], played: Sequence[PlayedChunk]) -> list[BotPlayback]:
    """Group the played chunks by the bot turn during which they started playing."""
    starts = [event.t for event in events if event.kind == EventKind.BOT_STARTED_SPEAKING]
    stops = [event.t for event in events if event.kind == EventKind.BOT_STOPPED_SPEAKING]
    turns = []
    for index, started_at in enumerate(starts):
        stopped_at = stops[index] if index < len(stops) else None
        audio = b"".join(
            chunk.audio
            for chunk in played
            if started_at <= chunk.t and (stopped_at is None or chunk.t <= stopped_at)
        )
        turns.append(BotPlayback(started_at, stopped_at, audio))
    return turns


def _record_aggregator_events(
    log: _EventLog, user: LLMUserAggregator, assistant: LLMAssistantAggregator
) -> None:
    async def _user_started(aggregator: LLMUserAggregator, strategy: object) -> None:
        log.record(EventKind.USER_TURN_STARTED, aggregator)

    async def _user_stopped(
        aggregator: LLMUserAggregator, strategy: object, message: UserTurnStoppedMessage
    ) -> None:
        log.record(EventKind.USER_TURN_STOPPED, aggregator, text=message.content)

    async def _assistant_started(aggregator: LLMAssistantAggregator) -> None:
        log.record(EventKind.ASSISTANT_TURN_STARTED, aggregator)

    async def _assistant_stopped(
        aggregator: LLMAssistantAggregator, message: AssistantTurnStoppedMessage
    ) -> None:
        log.record(
            EventKind.ASSISTANT_TURN_STOPPED,
            aggregator,
            text=message.content,
            interrupted=message.interrupted,
        )

    user.add_event_handler("on_user_turn_started", _user_started)
    user.add_event_handler("on_user_turn_stopped", _user_stopped)
    assistant.add_event_handler("on_assistant_turn_started", _assistant_started)
    assistant.add_event_handler("on_assistant_turn_stopped", _assistant_stopped)


@dataclass
class CallServices:
    """The scripted ends of a simulated call, for a pipeline of one's own.

    Parameters:
        microphone: The input transport (``transport.input()``): the caller's microphone.
        stt: The speech-to-text service.
        user_aggregator: The real ``LLMUserAggregator``, with Silero VAD.
        llm: The LLM.
        tts: The text-to-speech service.
        speaker: The output transport (``transport.output()``).
        assistant_aggregator: The real ``LLMAssistantAggregator``.
    """

    microphone: ScriptedMicrophone
    stt: ScriptedSTTService
    user_aggregator: LLMUserAggregator
    llm: ScriptedLLM
    tts: ScriptedTTSService
    speaker: SimulatedSpeaker
    assistant_aggregator: LLMAssistantAggregator


def build_call_services(*, script: CallScript = DEFAULT_SCRIPT, speed: float = 1.0) -> CallServices:
    """Build the scripted services and transports of a call, and Pipecat's real aggregators.

    User turns are decided by Pipecat's ``VADUserTurnStartStrategy`` (Silero VAD, default
    ``VADParams``) and ``SpeechTimeoutUserTurnStopStrategy``: the turn ends 0.6 s (call time)
    after the VAD stop, once the transcript is in. Wall-clock waits that are ours to set (that
    timeout, the LLM's time to first token, the pacing of both transports) are divided by
    ``speed``; Pipecat's own fixed timeouts are not, so very high speeds change the call.

    Args:
        script: What is said, and when.
        speed: How many times faster than real time to run (1.0 is real time).
    """
    if speed <= 0:
        raise InvalidArgumentError(f"speed must be positive, got {speed}")
    user_turns = UserTurnStrategies(
        start=[VADUserTurnStartStrategy()],
        stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=USER_SPEECH_TIMEOUT_S / speed)],
    )
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(), user_turn_strategies=user_turns
        ),
    )
    return CallServices(
        microphone=ScriptedMicrophone(script=script, audio=load_user_audio(script), speed=speed),
        stt=ScriptedSTTService(transcripts=[line.text for line in script.user_lines]),
        user_aggregator=user_aggregator,
        llm=ScriptedLLM(
            answers=[exchange.bot.text for exchange in script.exchanges],
            first_token_delay_s=LLM_FIRST_TOKEN_S / speed,
        ),
        tts=ScriptedTTSService(recordings=load_bot_audio(script)),
        speaker=SimulatedSpeaker(speed=speed),
        assistant_aggregator=assistant_aggregator,
    )


def build_call_pipeline(
    *,
    script: CallScript = DEFAULT_SCRIPT,
    speed: float = 1.0,
    recorder_processors: Sequence[FrameProcessor] = (),
    after_output_processors: Sequence[FrameProcessor] = (),
    on_aggregators: OnAggregators | None = None,
    observers: Sequence[BaseObserver] = (),
    enable_metrics: bool = False,
) -> SimulatedCall:
    """Build a simulated call, ready to :meth:`~SimulatedCall.run`.

    The services are :func:`build_call_services`'s, in a cascaded bot's pipeline.

    Args:
        script: What is said, and when.
        speed: How many times faster than real time to run (1.0 is real time).
        recorder_processors: Processors placed between the TTS and ``transport.output()``.
        after_output_processors: Processors placed right after ``transport.output()``.
        on_aggregators: Called with the user and assistant aggregators before the pipeline is
            built, e.g. to attach transcript handlers to their events.
        observers: Observers added to the pipeline worker (e.g. Pipecat's
            ``UserBotLatencyObserver``).
        enable_metrics: Whether the services report metrics (TTFB), as
            ``PipelineParams(enable_metrics=True)`` makes them.
    """
    services = build_call_services(script=script, speed=speed)
    microphone = services.microphone
    speaker = services.speaker
    user_aggregator = services.user_aggregator
    assistant_aggregator = services.assistant_aggregator
    pipeline = Pipeline(
        [
            microphone,
            services.stt,
            user_aggregator,
            services.llm,
            services.tts,
            *recorder_processors,
            speaker,
            *after_output_processors,
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=USER_SAMPLE_RATE,
            audio_out_sample_rate=BOT_SAMPLE_RATE,
            enable_metrics=enable_metrics,
        ),
        enable_rtvi=False,
    )
    log = _EventLog()
    worker.add_observer(
        _FrameEventObserver(log=log, user_aggregator=user_aggregator, speaker=speaker)
    )
    for observer in observers:
        worker.add_observer(observer)
    _record_aggregator_events(log, user_aggregator, assistant_aggregator)
    if on_aggregators is not None:
        on_aggregators(user_aggregator, assistant_aggregator)
    return SimulatedCall(
        script=script,
        speed=speed,
        pipeline=pipeline,
        worker=worker,
        microphone=microphone,
        speaker=speaker,
        user_aggregator=user_aggregator,
        assistant_aggregator=assistant_aggregator,
        _log=log,
    )


async def run_simulated_call(
    *,
    script: CallScript = DEFAULT_SCRIPT,
    speed: float = 1.0,
    recorder_processors: Sequence[FrameProcessor] = (),
    after_output_processors: Sequence[FrameProcessor] = (),
    on_aggregators: OnAggregators | None = None,
    observers: Sequence[BaseObserver] = (),
    enable_metrics: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> CallResult:
    """Build and run a simulated call; see :func:`build_call_pipeline` for the arguments.

    Args:
        script: What is said, and when.
        speed: How many times faster than real time to run.
        recorder_processors: Processors placed between the TTS and ``transport.output()``.
        after_output_processors: Processors placed right after ``transport.output()``.
        on_aggregators: Called with the user and assistant aggregators before the call starts.
        observers: Observers added to the pipeline worker.
        enable_metrics: Whether the services report metrics (TTFB).
        timeout_s: Wall time after which a stuck call is cancelled (``TimeoutError``).
    """
    call = build_call_pipeline(
        script=script,
        speed=speed,
        recorder_processors=recorder_processors,
        after_output_processors=after_output_processors,
        on_aggregators=on_aggregators,
        observers=observers,
        enable_metrics=enable_metrics,
    )
    return await call.run(timeout_s=timeout_s)
