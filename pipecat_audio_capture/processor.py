"""The frame processor that cuts a call's audio into one segment per speaking turn."""

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from enum import Enum, auto
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    AudioRawFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StopFrame,
    TTSStartedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecat_audio_capture import defaults
from pipecat_audio_capture.bot_track import BotTrack
from pipecat_audio_capture.clock import Clock, Timeline
from pipecat_audio_capture.collector import AudioCaptureCollector
from pipecat_audio_capture.errors import InvalidArgumentError
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.limits import format_supported
from pipecat_audio_capture.open_part import FinishedPart, PartLimits, duration_s, whole_samples
from pipecat_audio_capture.playback_tap import PlaybackTap
from pipecat_audio_capture.processor_stats import ProcessorStats
from pipecat_audio_capture.records import PendingAudioSegment
from pipecat_audio_capture.track_context import TrackContext
from pipecat_audio_capture.turn_ids import TurnIds
from pipecat_audio_capture.user_track import UserTrack

_SIBLING_MEMORY = 8


class _Kind(Enum):
    """What a frame type means to the processor, decided once per type."""

    OTHER = auto()
    USER_AUDIO = auto()
    BOT_AUDIO = auto()
    USER_STARTED = auto()
    USER_STOPPED = auto()
    BOT_STARTED = auto()
    BOT_STOPPED = auto()
    INTERRUPTION = auto()
    TTS_STARTED = auto()
    END = auto()
    CANCEL = auto()


_KIND_ORDER: tuple[tuple[type[Frame] | tuple[type[Frame], ...], _Kind], ...] = (
    (InputAudioRawFrame, _Kind.USER_AUDIO),
    (OutputAudioRawFrame, _Kind.BOT_AUDIO),
    (UserStartedSpeakingFrame, _Kind.USER_STARTED),
    (UserStoppedSpeakingFrame, _Kind.USER_STOPPED),
    (BotStartedSpeakingFrame, _Kind.BOT_STARTED),
    (BotStoppedSpeakingFrame, _Kind.BOT_STOPPED),
    (InterruptionFrame, _Kind.INTERRUPTION),
    (TTSStartedFrame, _Kind.TTS_STARTED),
    ((EndFrame, StopFrame), _Kind.END),
    (CancelFrame, _Kind.CANCEL),
)

_KINDS: dict[type[Frame], _Kind] = {}
"""Frame type to kind, filled as types are seen: a dict lookup per frame instead of a chain of
isinstance checks."""


def _kind_of(frame: Frame) -> _Kind:
    frame_type = type(frame)
    kind = _KINDS.get(frame_type)
    if kind is None:
        kind = next(
            (kind for types, kind in _KIND_ORDER if issubclass(frame_type, types)), _Kind.OTHER
        )
        _KINDS[frame_type] = kind
    return kind


# Module constants: read for every frame, and a global is cheaper to read than an enum member.
_DOWNSTREAM = FrameDirection.DOWNSTREAM


def _is_power_of_ten(count: int) -> bool:
    if count < 1:
        return False
    while count % 10 == 0:
        count //= 10
    return count == 1


_USER_AUDIO = _Kind.USER_AUDIO
_OTHER = _Kind.OTHER


class AudioCaptureProcessor(FrameProcessor):
    """Records each speaking turn of a call as its own segment.

    Put it between the TTS service and ``transport.output()``, and its :meth:`playback_tap`
    right after ``transport.output()``. It passes every frame on unchanged, in order and in its
    direction, and does a bounded amount of work per frame: audio is kept by reference, and
    finished segments go to the collector (normally a
    :class:`~pipecat_audio_capture.SessionAudioCapture`, which writes them in the background).

    Flush rules:

    - ``UserStoppedSpeakingFrame``: the user segment, not interrupted.
    - ``BotStoppedSpeakingFrame``: the bot segment, not interrupted.
    - ``InterruptionFrame``: the bot segment, interrupted, holding only what had played.
    - ``EndFrame`` / ``StopFrame`` / ``CancelFrame``: whatever is open, interrupted.

    User segments start at ``UserStartedSpeakingFrame`` with ``preroll_s`` of the input audio
    heard before it (VAD confirms speech only after it began). A bot segment holds what the
    caller heard: with the tap, exactly what the output transport wrote, with its times
    (``playback="confirmed"``); placed after ``transport.output()``, the same without the tap.
    Without either, a play-out clock predicts it (``playback="estimated"``): audio plays back to
    back in real time from when it arrives, re-anchored at ``BotStartedSpeakingFrame``.
    ``unplayed_ms`` records what an interruption cut (unknown after the output transport
    without a tap). The processor notices its placement from the direction of the bot speaking
    frames. See :class:`~pipecat_audio_capture.bot_track.BotTrack`.

    Each turn gets a new UUID from ``turn_ids`` when it starts; a turn longer than
    ``max_segment_s``, or whose sample rate or channel count changes, is split into several
    segments that share the turn id. After ``max_format_changes`` format changes the rest of a
    turn is counted in ``stats.format_churn_ms`` and not recorded. Audio frames outside
    :mod:`pipecat_audio_capture.limits` are passed on, counted, and not recorded.

    Events:

    - on_segment_captured(processor, segment: PendingAudioSegment): a segment was finished
      and handed to the collector.
    - on_audio_not_recorded(processor, reason: str, description: str): audio will not be
      recorded: ``"unsupported_format"`` (at the 1st, 10th, 100th... such frame),
      ``"format_churn"`` (once per turn that changed format too often) or ``"unwritten"`` (bot
      audio the output transport never wrote, seen with the tap). Also logged; the amounts are
      in :attr:`stats`.
    """

    def __init__(
        self,
        collector: AudioCaptureCollector,
        turn_ids: TurnIds | None = None,
        *,
        preroll_s: float = defaults.PREROLL_S,
        max_segment_s: float = defaults.MAX_SEGMENT_S,
        max_format_changes: int = defaults.MAX_FORMAT_CHANGES_PER_TURN,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize the processor.

        Args:
            collector: Receives finished segments; must not block.
            turn_ids: Shared turn-id state read by the transcript side; a private one if None.
            preroll_s: Input audio kept from before the user's turn starts.
            max_segment_s: Longest segment; longer turns are split (bounds memory).
            max_format_changes: Format changes one turn may make before the rest of it is
                counted and not recorded.
            clock: Monotonic clock in seconds. ``turn_ids`` brings its own (pass the same one,
                or none); without ``turn_ids`` the private one uses this clock.
            **kwargs: Passed to ``FrameProcessor``.
        """
        kwargs.setdefault("enable_direct_mode", defaults.PROCESSOR_DIRECT_MODE)
        super().__init__(**kwargs)
        if preroll_s < 0:
            raise InvalidArgumentError("preroll_s must not be negative")
        if max_segment_s <= 0:
            raise InvalidArgumentError("max_segment_s must be positive")
        if max_format_changes < 0:
            raise InvalidArgumentError("max_format_changes must not be negative")
        if turn_ids is None:
            turn_ids = TurnIds() if clock is None else TurnIds(clock=clock)
        elif clock is not None and clock != turn_ids.clock:
            raise InvalidArgumentError(
                "clock must be the clock of turn_ids: one call has one clock"
            )
        self._collector = collector
        self._turn_ids = turn_ids
        self._timeline = Timeline(turn_ids.clock)
        self._stats = ProcessorStats()
        limits = PartLimits(max_s=max_segment_s, max_format_changes=max_format_changes)
        context = TrackContext(turn_ids, self._timeline, limits, self._stats, self._report)
        self._user = UserTrack(context, preroll_s=preroll_s)
        self._bot = BotTrack(context)
        self._handled_ids: deque[int] = deque(maxlen=_SIBLING_MEMORY)
        # Audio not recorded, reported by the tracks during a frame; the events go out after it.
        self._reports: list[tuple[str, str]] = []
        self._register_event_handler("on_segment_captured")
        self._register_event_handler("on_audio_not_recorded")

    @property
    def turn_ids(self) -> TurnIds:
        """The turn-id state this processor writes."""
        return self._turn_ids

    @property
    def stats(self) -> ProcessorStats:
        """Counters of what the processor did with odd input."""
        return self._stats

    @property
    def playback_confirmed(self) -> bool:
        """Whether bot segments come from what the output transport wrote.

        They do with a running tap, or with this processor placed after the output transport.
        """
        return self._bot.after_output

    def wall_time(self, monotonic_s: float) -> datetime:
        """The UTC time a reading of the processor's clock stands for (as in ``started_at``)."""
        return self._timeline.wall(monotonic_s)

    def playback_tap(self) -> PlaybackTap:
        """Return a processor to put right after ``transport.output()``.

        With it, bot segments hold what the transport wrote, with its times::

            Pipeline([..., tts, capture, transport.output(), capture.playback_tap(), ...])
        """
        return PlaybackTap(self._tap_started, self._played)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Record what the frame means for the open turns, then pass it on.

        Args:
            frame: The frame to process.
            direction: The direction of frame flow.
        """
        await super().process_frame(frame, direction)
        kind = _KINDS.get(type(frame)) or _kind_of(frame)
        if kind is _USER_AUDIO:
            # Most frames are microphone audio: straight to the user track.
            finished = self._on_input_audio(frame)  # type: ignore[arg-type]  # its kind says so
        elif kind is _OTHER:
            finished = ()
        else:
            finished = self._handle(frame, kind, direction)
        segments = self._submit(finished) if finished else ()
        await self.push_frame(frame, direction)
        for segment in segments:
            await self._call_event_handler("on_segment_captured", segment)
        if self._reports:
            await self._emit_reports()

    async def cleanup(self) -> None:
        """Hand over whatever is still open when the pipeline is torn down."""
        # Pipecat leaves FrameProcessor.cleanup() unannotated.
        await super().cleanup()  # type: ignore[no-untyped-call]
        finished = [*self._user.stop(interrupted=True), *self._bot.close(cancelled=False)]
        for segment in self._submit(finished):
            await self._call_event_handler("on_segment_captured", segment)

    def _handle(
        self, frame: Frame, kind: _Kind, direction: FrameDirection
    ) -> Sequence[FinishedPart]:
        """What a frame this processor sees, other than input audio, means for the tracks."""
        if kind is _Kind.BOT_AUDIO:
            if direction is not _DOWNSTREAM:
                return ()
            if self._bot.tapped:
                audio = self._recordable(frame)  # type: ignore[arg-type]
                if audio:
                    self._bot.generated(frame, audio)  # type: ignore[arg-type]
                return ()
            return self._on_bot_audio(frame)  # type: ignore[arg-type]
        if kind is _Kind.INTERRUPTION:
            return () if self._bot.tapped else self._bot.interrupted()
        if kind is _Kind.TTS_STARTED:
            if direction is _DOWNSTREAM and not self._bot.tapped:
                self._bot.answer_started()
            return ()
        if kind is _Kind.END or kind is _Kind.CANCEL:
            user = self._user.stop(interrupted=True)
            if self._bot.tapped and kind is _Kind.END:
                # The transport plays out its queue first; the tap closes the bot's turn.
                return user
            return [*user, *self._bot.close(cancelled=kind is _Kind.CANCEL)]
        if self._is_sibling_of_handled(frame):
            return ()
        if kind is _Kind.USER_STARTED:
            self._user.start()
            return ()
        if kind is _Kind.USER_STOPPED:
            return self._user.stop()
        if self._bot.tapped:
            return ()  # the tap reports the transport's speaking frames
        if direction is _DOWNSTREAM:
            self._bot.after_output = True
        return self._on_speaking(kind)

    def _on_speaking(self, kind: _Kind) -> Sequence[FinishedPart]:
        if kind is _Kind.BOT_STARTED:
            self._bot.started()
            return ()
        return self._bot.stopped()

    def _on_input_audio(self, frame: AudioRawFrame) -> Sequence[FinishedPart]:
        if not self._supported(frame):
            return ()
        if self._user.part is None:
            self._user.preroll.add(frame)
            return ()
        audio = self._whole_samples(frame)
        return self._user.hear(frame, audio) if audio else ()

    def _on_bot_audio(self, frame: OutputAudioRawFrame) -> Sequence[FinishedPart]:
        audio = self._recordable(frame)
        return self._bot.hear(frame, audio) if audio else ()

    def _recordable(self, frame: AudioRawFrame) -> bytes:
        """The frame's whole samples, or none if its format is outside the limits."""
        return self._whole_samples(frame) if self._supported(frame) else b""

    def _tap_started(self) -> None:
        self._bot.use_tap()

    async def _played(self, frame: Frame) -> None:
        """A frame that left the output transport, reported by the tap."""
        kind = _kind_of(frame)
        finished: Sequence[FinishedPart] = ()
        if kind is _Kind.BOT_AUDIO:
            finished = self._on_bot_audio(frame)  # type: ignore[arg-type]
        elif kind is _Kind.INTERRUPTION:
            finished = self._bot.interrupted()
        elif kind is _Kind.TTS_STARTED:
            self._bot.answer_started()
        elif kind is _Kind.END or kind is _Kind.CANCEL:
            finished = self._bot.close(cancelled=kind is _Kind.CANCEL)
        elif kind in (_Kind.BOT_STARTED, _Kind.BOT_STOPPED) and not self._is_sibling_of_handled(
            frame
        ):
            finished = self._on_speaking(kind)
        for segment in self._submit(finished):
            await self._call_event_handler("on_segment_captured", segment)
        if self._reports:
            await self._emit_reports()

    def _report(self, reason: str, description: str) -> None:
        logger.warning(f"{self}: {description}")
        self._reports.append((reason, description))

    async def _emit_reports(self) -> None:
        reports, self._reports = self._reports, []
        for reason, description in reports:
            await self._call_event_handler("on_audio_not_recorded", reason, description)

    def _is_sibling_of_handled(self, frame: Frame) -> bool:
        # Pipecat broadcasts speaking frames both ways as siblings; a processor that sees both
        # copies must count the event once.
        if (
            frame.broadcast_sibling_id is not None
            and frame.broadcast_sibling_id in self._handled_ids
        ):
            return True
        self._handled_ids.append(frame.id)
        return False

    def _supported(self, frame: AudioRawFrame) -> bool:
        """Whether every layer can record the frame's format; if not, it is counted."""
        if format_supported(frame.sample_rate, frame.num_channels):
            return True
        stats = self._stats
        stats.unsupported_format_frames += 1
        if frame.sample_rate > 0 and frame.num_channels > 0:
            seconds = duration_s(len(frame.audio), frame.sample_rate, frame.num_channels)
            stats.unsupported_format_ms += seconds * 1000.0
        if _is_power_of_ten(stats.unsupported_format_frames):
            # The 1st, 10th, 100th... such frame: a stream of them cannot flood the log.
            self._report(
                "unsupported_format",
                f"{stats.unsupported_format_frames} audio frame(s) outside the supported formats "
                f"so far, the last {frame.sample_rate} Hz with {frame.num_channels} channel(s): "
                "passed on, not recorded",
            )
        return False

    def _whole_samples(self, frame: AudioRawFrame) -> bytes:
        audio = whole_samples(frame)
        self._stats.trimmed_bytes += len(frame.audio) - len(audio)
        return audio

    def _submit(self, finished: Sequence[FinishedPart]) -> list[PendingAudioSegment]:
        """Hand finished parts to the collector as segments."""
        segments: list[PendingAudioSegment] = []
        for done in finished:
            part = done.part
            played_until = part.played_until
            segment = PendingAudioSegment(
                segment_id=new_id(),
                session_id=self._collector.session_id,
                turn_id=part.turn_id,
                speaker=part.speaker,
                pcm=part.chunks,
                sample_rate=part.sample_rate,
                num_channels=part.num_channels,
                started_at=part.started_at,
                interrupted=done.interrupted,
                unplayed_ms=done.unplayed_ms,
                pcm_bytes=part.nbytes,
                playback=done.playback,
                played_until=None if played_until is None else self._timeline.wall(played_until),
            )
            if self._collector.record_segment(segment):
                self._stats.segments += 1
            else:
                self._stats.refused += 1
            segments.append(segment)
        return segments
