"""The frame processor that cuts a call's audio into one segment per speaking turn."""

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum, auto

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
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecat_audio_capture import defaults
from pipecat_audio_capture.collector import AudioCaptureCollector
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import SAMPLE_WIDTH_BYTES, PendingAudioSegment, Speaker
from pipecat_audio_capture.turn_ids import TurnIds

_SIBLING_MEMORY = 8

_NONE: tuple[PendingAudioSegment, ...] = ()
"""What most frames finish: nothing (shared, so the audio path allocates no list per frame)."""


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
    ((EndFrame, StopFrame), _Kind.END),
    (CancelFrame, _Kind.CANCEL),
)

_KINDS: dict[type[Frame], _Kind] = {}
"""Frame type to kind, filled as types are seen: a dict lookup per frame instead of a chain of
isinstance checks."""


def _learn_kind(frame_type: type[Frame]) -> _Kind:
    """The kind of a frame type not seen before, remembered for the next frames of that type."""
    kind = next((kind for types, kind in _KIND_ORDER if issubclass(frame_type, types)), _Kind.OTHER)
    _KINDS[frame_type] = kind
    return kind


# Module constants: the audio path compares against these for every frame, and a global is
# cheaper to read than an enum member or a class attribute.
_USER_AUDIO = _Kind.USER_AUDIO
_BOT_AUDIO = _Kind.BOT_AUDIO
_DOWNSTREAM = FrameDirection.DOWNSTREAM
_PREROLL_SLACK_BYTES = 8192
"""Least input the pre-roll gathers past what a turn could use before it is trimmed (otherwise
twice ``preroll_s``): trimming walks the buffer, so it runs once per that much audio rather than
per frame."""
_PREROLL_FRAME_BYTES = 64
"""What the pre-roll counts for holding a frame on top of its audio, so that a stream of empty
frames is trimmed too."""


def _whole_samples(frame: AudioRawFrame) -> bytes:
    """The frame's audio cut to whole sample frames; none if its format is impossible."""
    audio = frame.audio
    if frame.num_channels == 1 and not len(audio) & 1 and frame.sample_rate > 0:
        return audio
    if frame.sample_rate <= 0 or frame.num_channels <= 0:
        return b""
    extra = len(audio) % (SAMPLE_WIDTH_BYTES * frame.num_channels)
    return audio[:-extra] if extra else audio


@dataclass
class ProcessorStats:
    """Counters of :class:`AudioCaptureProcessor`, for logs and tests.

    Parameters:
        segments: Segments handed to the collector.
        refused: Segments the collector refused (it reports them itself).
        trimmed_bytes: Bytes cut off audio frames that were not whole samples, or whole frames
            of an impossible format. Input frames in the pre-roll are checked when a turn
            starts, so those dropped before any turn could use them are not counted.
        unplayed_ms: Bot audio generated but cut by interruptions before it played.
        ignored_bot_audio_ms: Bot audio outside any bot turn (after the output transport:
            the chunk being written when a barge-in arrives, or mixer output between turns).
        stops_without_start: ``UserStoppedSpeakingFrame`` with no user turn open.
    """

    segments: int = 0
    refused: int = 0
    trimmed_bytes: int = 0
    unplayed_ms: float = 0.0
    ignored_bot_audio_ms: float = 0.0
    stops_without_start: int = 0


@dataclass
class _OpenSegment:
    """Audio gathered for one part of one turn, kept as references to the frames' bytes.

    Bot parts also keep when each chunk is due to play (``starts``): TTS audio can arrive with
    pauses between chunks, and a barge-in must be cut at the chunk that was playing.
    """

    turn_id: str
    speaker: Speaker
    sample_rate: int
    num_channels: int
    started_at: datetime
    play_start: float
    max_s: float
    context_id: str | None = None
    chunks: list[bytes] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    nbytes: int = 0
    # Plain attributes rather than properties: the audio path reads them for every frame.
    frame_bytes: int = field(init=False)
    byte_rate: int = field(init=False)
    max_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.frame_bytes = SAMPLE_WIDTH_BYTES * self.num_channels
        self.byte_rate = self.sample_rate * self.frame_bytes
        samples = int(self.max_s * self.sample_rate)
        self.max_bytes = max(self.frame_bytes, samples * self.frame_bytes)

    @property
    def duration_s(self) -> float:
        return self.nbytes / self.byte_rate

    @property
    def play_end(self) -> float:
        if self.starts:
            return self.starts[-1] + len(self.chunks[-1]) / self.byte_rate
        return self.play_start + self.duration_s

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.nbytes += len(chunk)

    def shift(self, delay_s: float) -> None:
        """Move the part later on the play-out clock."""
        self.play_start += delay_s
        self.started_at += timedelta(seconds=delay_s)
        self.starts = [start + delay_s for start in self.starts]

    def played_bytes(self, now: float) -> int:
        """Bytes of the part that had started playing by ``now`` (whole sample frames)."""
        played = 0
        for chunk, start in zip(self.chunks, self.starts, strict=True):
            if start >= now:
                break
            elapsed = int((now - start) * self.sample_rate) * self.frame_bytes
            played += min(len(chunk), elapsed)
        return played

    def truncate(self, keep_bytes: int) -> None:
        """Keep only the first ``keep_bytes`` bytes (a whole number of sample frames)."""
        kept: list[bytes] = []
        total = 0
        for chunk in self.chunks:
            if total + len(chunk) >= keep_bytes:
                kept.append(chunk[: keep_bytes - total])
                total = keep_bytes
                break
            kept.append(chunk)
            total += len(chunk)
        self.chunks = kept
        self.starts = self.starts[: len(kept)]
        self.nbytes = total

    def next_part(self, sample_rate: int, num_channels: int, play_start: float) -> "_OpenSegment":
        """A new segment of the same turn starting at ``play_start``."""
        return _OpenSegment(
            turn_id=self.turn_id,
            speaker=self.speaker,
            sample_rate=sample_rate,
            num_channels=num_channels,
            started_at=self.started_at + timedelta(seconds=play_start - self.play_start),
            play_start=play_start,
            max_s=self.max_s,
            context_id=self.context_id,
        )


@dataclass
class _PrerollTail:
    """The part of the pre-roll a turn starting now would take, and what it says of the rest.

    Parameters:
        chunks: The audio taken, newest first, whole samples only.
        nbytes: Bytes in ``chunks``.
        audio_format: Sample rate and channels of the audio taken; None if there is none.
        frames: The frames the chunks come from, newest first: all a later turn could use.
        held_bytes: What the pre-roll counts for holding ``frames``.
        trimmed_bytes: Bytes cut off the frames looked at: stray bytes, or whole frames of an
            impossible format.
    """

    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    audio_format: tuple[int, int] | None = None
    frames: list[AudioRawFrame] = field(default_factory=list)
    held_bytes: int = 0
    trimmed_bytes: int = 0


class AudioCaptureProcessor(FrameProcessor):
    """Records each speaking turn of a call as its own segment.

    Put it between the TTS service and ``transport.output()``. It passes every frame on
    unchanged, in order and in its direction, and does a bounded amount of work per frame: audio
    is kept by reference, and finished segments go to the collector (normally a
    :class:`~pipecat_audio_capture.SessionAudioCapture`, which writes them in the background).

    Flush rules:

    - ``UserStoppedSpeakingFrame``: the user segment, not interrupted.
    - ``BotStoppedSpeakingFrame``: the bot segment, not interrupted.
    - ``InterruptionFrame``: the bot segment, interrupted, holding only what had played.
    - ``EndFrame`` / ``StopFrame`` / ``CancelFrame``: whatever is open, interrupted.

    User segments start at ``UserStartedSpeakingFrame`` with ``preroll_s`` of the input audio
    heard before it (VAD confirms speech only after it began). Between TTS and the output
    transport, bot audio arrives faster than real time; the processor keeps a play-out clock
    (audio plays back to back from when it arrives, at its own rate, re-anchored when the
    transport reports ``BotStartedSpeakingFrame``) so an interrupted segment holds what was
    played and ``unplayed_ms`` records what was cut. Placed after ``transport.output()``, audio
    arrives as it is played, so nothing is cut; the processor notices the placement from the
    direction of the bot speaking frames.

    Each turn gets a new UUID from ``turn_ids`` when it starts; a turn longer than
    ``max_segment_s``, or whose sample rate or channel count changes, is split into several
    segments that share the turn id.

    Events:

    - on_segment_captured(processor, segment: PendingAudioSegment): a segment was finished
      and handed to the collector.
    """

    def __init__(
        self,
        collector: AudioCaptureCollector,
        turn_ids: TurnIds | None = None,
        *,
        preroll_s: float = defaults.PREROLL_S,
        max_segment_s: float = defaults.MAX_SEGMENT_S,
        **kwargs,
    ) -> None:
        """Initialize the processor.

        Args:
            collector: Receives finished segments; must not block.
            turn_ids: Shared turn-id state read by the transcript side; a private one if None.
            preroll_s: Input audio kept from before the user's turn starts.
            max_segment_s: Longest segment; longer turns are split (bounds memory).
            **kwargs: Passed to ``FrameProcessor``.
        """
        super().__init__(**kwargs)
        if preroll_s < 0:
            raise ValueError("preroll_s must not be negative")
        if max_segment_s <= 0:
            raise ValueError("max_segment_s must be positive")
        self._collector = collector
        self._turn_ids = turn_ids or TurnIds()
        self._preroll_s = preroll_s
        self._max_segment_s = max_segment_s
        self._stats = ProcessorStats()
        # One wall-clock anchor: every timestamp is derived from the monotonic clock through it,
        # so timestamps of one call never step back when the system clock is adjusted.
        self._wall_anchor = datetime.now(UTC)
        self._mono_anchor = time.monotonic()
        # Where the last user segment ended (monotonic); a pre-roll never reaches back before it.
        self._user_end = float("-inf")
        self._bot_end = float("-inf")
        self._last_bot_turn: str | None = None

        # Input frames heard outside a user turn, newest last. They are checked (format, whole
        # samples) and cut to ``preroll_s`` only when a turn starts, so a frame costs an append;
        # ``_preroll_bytes`` counts their bytes (plus a little per frame), and past
        # ``_preroll_trim_at`` the frames no turn could use are dropped.
        self._preroll: list[AudioRawFrame] = []
        self._preroll_bytes = 0
        self._preroll_trim_at = 0
        # Format of the last pre-roll taken: a turn that starts with none uses it.
        self._preroll_format = (16000, 1)
        self._user: _OpenSegment | None = None

        # Bot parts in play-out order; before the output transport more than one turn can be
        # queued (a greeting and the next answer), each ended by its own BotStoppedSpeakingFrame.
        self._bot: deque[_OpenSegment] = deque()
        self._play_cursor = 0.0
        self._head_anchored = False
        self._after_output = False
        self._bot_speaking = False
        self._handled_ids: deque[int] = deque(maxlen=_SIBLING_MEMORY)

        self._register_event_handler("on_segment_captured")

    @property
    def turn_ids(self) -> TurnIds:
        """The turn-id state this processor writes."""
        return self._turn_ids

    @property
    def stats(self) -> ProcessorStats:
        """Counters of what the processor did with odd input."""
        return self._stats

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Record what the frame means for the open turns, then pass it on.

        Args:
            frame: The frame to process.
            direction: The direction of frame flow.
        """
        await super().process_frame(frame, direction)
        kind = _KINDS.get(type(frame)) or _learn_kind(type(frame))
        # The audio path, inlined because it runs for every 10-20 ms of each speaker's audio:
        # the common case appends a reference and updates a few numbers. Anything else (a turn
        # starting or splitting, odd audio, after the output transport) takes the methods below.
        if kind is _USER_AUDIO:
            mic: AudioRawFrame = frame  # type: ignore[assignment]  # its kind says so
            user = self._user
            if user is None:
                self._preroll.append(mic)
                self._preroll_bytes += len(mic.audio) + _PREROLL_FRAME_BYTES
                if self._preroll_bytes > self._preroll_trim_at:
                    self._trim_preroll()
                await self.push_frame(frame, direction)
                return
            audio = mic.audio
            size = len(audio)
            if (
                mic.sample_rate == user.sample_rate
                and mic.num_channels == user.num_channels
                and size
                and not size % user.frame_bytes
                and user.nbytes + size <= user.max_bytes
            ):
                user.chunks.append(audio)
                user.nbytes += size
                await self.push_frame(frame, direction)
                return
            finished = self._on_input_audio(mic, user)
        elif kind is _BOT_AUDIO and direction is _DOWNSTREAM and len(self._bot) == 1:
            tts: AudioRawFrame = frame  # type: ignore[assignment]  # its kind says so
            part = self._bot[0]
            audio = tts.audio
            size = len(audio)
            context_id = getattr(tts, "context_id", None)
            if (
                not self._after_output
                and tts.sample_rate == part.sample_rate
                and tts.num_channels == part.num_channels
                and size
                and not size % part.frame_bytes
                and part.nbytes
                and part.nbytes + size <= part.max_bytes
                and (context_id == part.context_id or context_id is None or part.context_id is None)
            ):
                # The same play-out clock as _on_bot_audio: the chunk plays when the previous
                # one ends, or now if the transport has run dry.
                now = time.monotonic()
                start = self._play_cursor
                if now > start:
                    start = now
                if self._bot_end > start:
                    start = self._bot_end
                part.chunks.append(audio)
                part.starts.append(start)
                part.nbytes += size
                self._play_cursor = start + size / part.byte_rate
                await self.push_frame(frame, direction)
                return
            finished = self._handle(frame, kind, direction)
        else:
            finished = self._handle(frame, kind, direction)
        await self.push_frame(frame, direction)
        for segment in finished:
            await self._emit(segment)

    async def cleanup(self) -> None:
        """Hand over whatever is still open when the pipeline is torn down."""
        await super().cleanup()
        for segment in self._close_all(cancelled=False):
            await self._emit(segment)

    def _handle(
        self, frame: Frame, kind: _Kind, direction: FrameDirection
    ) -> Sequence[PendingAudioSegment]:
        """What any frame but input audio means (``process_frame`` takes input audio)."""
        if kind is _Kind.OTHER:
            return _NONE
        if kind is _Kind.BOT_AUDIO:
            if direction == FrameDirection.DOWNSTREAM:
                return self._on_bot_audio(frame)  # type: ignore[arg-type]
            return _NONE
        if kind is _Kind.INTERRUPTION:
            return self._on_interruption()
        if kind is _Kind.END:
            return self._close_all(cancelled=False)
        if kind is _Kind.CANCEL:
            return self._close_all(cancelled=True)
        if self._is_sibling_of_handled(frame):
            return _NONE
        if kind is _Kind.USER_STARTED:
            self._on_user_started()
            return _NONE
        if kind is _Kind.USER_STOPPED:
            return self._on_user_stopped()
        if direction == FrameDirection.DOWNSTREAM:
            self._after_output = True
        if kind is _Kind.BOT_STARTED:
            self._on_bot_started()
            return _NONE
        return self._on_bot_stopped()

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

    # User side.

    def _on_input_audio(
        self, frame: AudioRawFrame, user: _OpenSegment
    ) -> Sequence[PendingAudioSegment]:
        """Input audio in the open user turn that the inlined path in ``process_frame`` did not
        take: odd audio, a format change, or the cap reached."""
        audio = self._whole_samples(frame)
        if not audio:
            return _NONE
        finished: Sequence[PendingAudioSegment] = _NONE
        if (
            frame.sample_rate != user.sample_rate
            or frame.num_channels != user.num_channels
            or user.nbytes + len(audio) > user.max_bytes
        ):
            finished = self._submit(user, interrupted=False)
            user = self._user = user.next_part(frame.sample_rate, frame.num_channels, user.play_end)
        user.append(audio)
        return finished

    def _preroll_limit(self, sample_rate: int, num_channels: int) -> int:
        seconds = min(self._preroll_s, self._max_segment_s)
        return int(seconds * sample_rate) * SAMPLE_WIDTH_BYTES * num_channels

    def _preroll_tail(self) -> _PrerollTail:
        """What a turn starting now takes from the pre-roll: the newest input audio in one
        format (a format change starts the pre-roll afresh), whole samples only, back until
        ``preroll_s`` is covered."""
        tail = _PrerollTail()
        # No frame matches a format of None: the first one with audio sets it.
        rate: int | None = None
        channels: int | None = None
        limit = 0
        frame_bytes = 1
        preroll = self._preroll
        for index in range(len(preroll) - 1, -1, -1):
            frame = preroll[index]
            audio = frame.audio
            size = len(audio)
            if (
                frame.sample_rate != rate
                or frame.num_channels != channels
                or size % frame_bytes
                or not size
            ):
                audio = _whole_samples(frame)
                if audio and rate is None:
                    rate, channels = frame.sample_rate, frame.num_channels
                    frame_bytes = SAMPLE_WIDTH_BYTES * channels
                    limit = self._preroll_limit(rate, channels)
                    tail.audio_format = (rate, channels)
                elif audio and (frame.sample_rate != rate or frame.num_channels != channels):
                    return tail
            if rate is not None and tail.nbytes >= limit:
                return tail
            tail.trimmed_bytes += size - len(audio)
            if audio:
                tail.chunks.append(audio)
                tail.nbytes += len(audio)
                tail.frames.append(frame)
                tail.held_bytes += size + _PREROLL_FRAME_BYTES
        return tail

    def _trim_preroll(self) -> None:
        tail = self._preroll_tail()
        tail.frames.reverse()
        self._preroll = tail.frames
        self._preroll_bytes = tail.held_bytes
        limit = self._preroll_limit(*tail.audio_format) if tail.audio_format else 0
        self._preroll_trim_at = self._preroll_bytes + max(2 * limit, _PREROLL_SLACK_BYTES)

    def _on_user_started(self) -> None:
        if self._user is not None:
            return
        now = time.monotonic()
        tail = self._preroll_tail()
        self._stats.trimmed_bytes += tail.trimmed_bytes
        self._preroll.clear()
        self._preroll_bytes = 0
        self._preroll_trim_at = 0
        if tail.audio_format is not None:
            self._preroll_format = tail.audio_format
        sample_rate, num_channels = self._preroll_format
        chunks, total = tail.chunks, tail.nbytes
        chunks.reverse()
        excess = total - self._preroll_limit(sample_rate, num_channels)
        if excess > 0:
            chunks[0] = chunks[0][excess:]
            total -= excess
        preroll_s = total / (sample_rate * SAMPLE_WIDTH_BYTES * num_channels)
        # Audio that arrived in a burst holds more than the wall time it covers; clamping keeps
        # one speaker's segments from overlapping.
        start = max(now - preroll_s, self._user_end)
        self._user = _OpenSegment(
            turn_id=self._turn_ids.start_turn("user", at=now),
            speaker="user",
            sample_rate=sample_rate,
            num_channels=num_channels,
            started_at=self._wall(start),
            play_start=start,
            max_s=self._max_segment_s,
            chunks=chunks,
            nbytes=total,
        )

    def _on_user_stopped(self) -> list[PendingAudioSegment]:
        user = self._user
        if user is None:
            self._stats.stops_without_start += 1
            return []
        self._user = None
        self._turn_ids.end_turn(user.turn_id)
        return self._submit(user, interrupted=False)

    # Bot side.

    def _on_bot_audio(self, frame: OutputAudioRawFrame) -> Sequence[PendingAudioSegment]:
        audio = self._whole_samples(frame)
        if not audio:
            return _NONE
        now = time.monotonic()
        duration_s = len(audio) / (frame.sample_rate * SAMPLE_WIDTH_BYTES * frame.num_channels)
        if self._after_output:
            if not self._bot_speaking:
                self._stats.ignored_bot_audio_ms += duration_s * 1000.0
                return _NONE
            # Audio past the output transport has just been played.
            start = max(self._play_cursor, now - duration_s)
        else:
            start = max(self._play_cursor, now)
        # A segment already handed over keeps its place on the time line even if the transport
        # disagreed with the play-out clock; the next audio starts after it.
        start = max(start, self._bot_end)
        self._play_cursor = start + duration_s

        context_id = getattr(frame, "context_id", None)
        finished: Sequence[PendingAudioSegment] = _NONE
        last = self._bot[-1] if self._bot else None
        if last is None or (
            context_id is not None and last.context_id is not None and context_id != last.context_id
        ):
            if self._after_output:
                # Played audio is final: the previous turn is complete once another one begins.
                finished = self._flush_bot(interrupted=False, unplayed_ms=None)
            self._new_bot_turn(frame, start, context_id)
        extended = self._extend_bot(audio, frame.sample_rate, frame.num_channels, start)
        released = self._release_played_parts(now) if len(self._bot) > 1 else _NONE
        if extended or released:
            return [*finished, *extended, *released]
        return finished

    def _extend_bot(
        self, audio: bytes, sample_rate: int, num_channels: int, start: float
    ) -> Sequence[PendingAudioSegment]:
        """Add audio to the bot's last part, starting a new part on a format change or the cap."""
        finished: Sequence[PendingAudioSegment] = _NONE
        last = self._bot[-1]
        if last.nbytes and (
            sample_rate != last.sample_rate
            or num_channels != last.num_channels
            or last.nbytes + len(audio) > last.max_bytes
        ):
            part = last.next_part(sample_rate, num_channels, start)
            if self._after_output:
                # Played audio is final: hand it over now rather than holding it.
                finished = self._flush_bot(interrupted=False, unplayed_ms=None)
            self._bot.append(part)
            last = part
        last.chunks.append(audio)
        last.starts.append(start)
        last.nbytes += len(audio)
        return finished

    def _release_played_parts(self, now: float) -> list[PendingAudioSegment]:
        """Hand over the parts of a long bot turn that have finished playing.

        A turn split at ``max_segment_s`` would otherwise keep every played part in memory until
        its ``BotStoppedSpeakingFrame``. Only parts followed by another part of the same turn go:
        a turn's last part waits for its stop, which is what the flush rules key on.
        """
        finished: list[PendingAudioSegment] = []
        bot = self._bot
        while len(bot) > 1 and bot[0].turn_id == bot[1].turn_id and bot[0].play_end <= now:
            unplayed = None if self._after_output else 0.0
            finished += self._submit(bot.popleft(), interrupted=False, unplayed_ms=unplayed)
        return finished

    def _new_bot_turn(
        self, frame: OutputAudioRawFrame, start: float, context_id: str | None
    ) -> _OpenSegment:
        segment = _OpenSegment(
            turn_id=self._turn_ids.start_turn("bot", at=start),
            speaker="bot",
            sample_rate=frame.sample_rate,
            num_channels=frame.num_channels,
            started_at=self._wall(start),
            play_start=start,
            max_s=self._max_segment_s,
            context_id=context_id,
        )
        if not self._bot:
            self._head_anchored = self._after_output
        self._bot.append(segment)
        return segment

    def _on_bot_started(self) -> None:
        self._bot_speaking = True
        if self._after_output or self._head_anchored or not self._bot:
            return
        # The transport reports the moment the first chunk really starts playing; shift the
        # predicted schedule to it (it only lags, by chunking and scheduling delays).
        delay = time.monotonic() - self._bot[0].play_start
        if delay > 0:
            for part in self._bot:
                part.shift(delay)
            self._play_cursor += delay
        self._head_anchored = True

    def _on_bot_stopped(self) -> list[PendingAudioSegment]:
        self._bot_speaking = False
        if not self._bot:
            return []
        if not self._after_output and self._bot[0].play_start > time.monotonic():
            # A stop for audio already closed by an interruption, arriving after the next
            # turn's audio was queued: that turn has not started playing yet.
            return []
        head_turn = self._bot[0].turn_id
        finished: list[PendingAudioSegment] = []
        unplayed = None if self._after_output else 0.0
        while self._bot and self._bot[0].turn_id == head_turn:
            part = self._bot.popleft()
            finished += self._submit(part, interrupted=False, unplayed_ms=unplayed)
        self._turn_ids.end_turn(head_turn)
        self._head_anchored = False
        return finished

    def _on_interruption(self) -> list[PendingAudioSegment]:
        if not self._bot:
            return []
        if self._after_output:
            return self._flush_bot(interrupted=True, unplayed_ms=None)
        return self._cut_bot_at(time.monotonic())

    def _cut_bot_at(self, now: float) -> list[PendingAudioSegment]:
        """Flush what has played by ``now``; drop (and count) what has not."""
        played: list[_OpenSegment] = []
        unplayed_s = 0.0
        for part in self._bot:
            keep = part.played_bytes(now)
            unplayed_s += (part.nbytes - keep) / part.byte_rate
            if keep == 0:
                heard = self._last_bot_turn == part.turn_id or any(
                    p.turn_id == part.turn_id for p in played
                )
                if not heard:
                    self._turn_ids.discard_turn(part.turn_id)
                continue
            part.truncate(keep)
            played.append(part)
        self._bot.clear()
        self._play_cursor = now
        self._head_anchored = False
        unplayed_ms = unplayed_s * 1000.0
        self._stats.unplayed_ms += unplayed_ms
        finished: list[PendingAudioSegment] = []
        for index, part in enumerate(played):
            self._turn_ids.end_turn(part.turn_id, at=min(now, part.play_end))
            last = index == len(played) - 1
            finished += self._submit(
                part, interrupted=True, unplayed_ms=unplayed_ms if last else 0.0
            )
        if unplayed_ms and not played:
            logger.debug(
                f"{self}: interruption cut {unplayed_ms:.0f} ms of bot audio before it played"
            )
        return finished

    def _flush_bot(
        self, *, interrupted: bool, unplayed_ms: float | None
    ) -> list[PendingAudioSegment]:
        finished: list[PendingAudioSegment] = []
        while self._bot:
            part = self._bot.popleft()
            self._turn_ids.end_turn(part.turn_id)
            finished += self._submit(part, interrupted=interrupted, unplayed_ms=unplayed_ms)
        self._head_anchored = False
        return finished

    # Session end.

    def _close_all(self, *, cancelled: bool) -> list[PendingAudioSegment]:
        finished: list[PendingAudioSegment] = []
        if self._user is not None:
            user, self._user = self._user, None
            self._turn_ids.end_turn(user.turn_id)
            finished += self._submit(user, interrupted=True)
        if self._bot:
            if cancelled and not self._after_output:
                # CancelFrame drops the transport's queued audio at once, like a barge-in.
                finished += self._cut_bot_at(time.monotonic())
            else:
                # EndFrame and StopFrame let queued audio play out, so all of it is heard.
                unplayed = None if self._after_output else 0.0
                finished += self._flush_bot(interrupted=True, unplayed_ms=unplayed)
        return finished

    # Helpers.

    def _whole_samples(self, frame: AudioRawFrame) -> bytes:
        audio = _whole_samples(frame)
        self._stats.trimmed_bytes += len(frame.audio) - len(audio)
        return audio

    def _wall(self, monotonic_s: float) -> datetime:
        return self._wall_anchor + timedelta(seconds=monotonic_s - self._mono_anchor)

    def _submit(
        self, part: _OpenSegment, *, interrupted: bool, unplayed_ms: float | None = None
    ) -> list[PendingAudioSegment]:
        if part.nbytes == 0:
            return []
        if part.speaker == "user":
            self._user_end = part.play_end
        else:
            self._bot_end = max(self._bot_end, part.play_end)
            self._last_bot_turn = part.turn_id
        segment = PendingAudioSegment(
            segment_id=new_id(),
            session_id=self._collector.session_id,
            turn_id=part.turn_id,
            speaker=part.speaker,
            pcm=part.chunks,
            sample_rate=part.sample_rate,
            num_channels=part.num_channels,
            started_at=part.started_at,
            interrupted=interrupted,
            unplayed_ms=unplayed_ms if part.speaker == "bot" else None,
            pcm_bytes=part.nbytes,
        )
        if self._collector.record_segment(segment):
            self._stats.segments += 1
        else:
            self._stats.refused += 1
        return [segment]

    async def _emit(self, segment: PendingAudioSegment) -> None:
        await self._call_event_handler("on_segment_captured", segment)
