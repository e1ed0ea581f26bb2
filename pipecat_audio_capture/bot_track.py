"""The bot's side of a call: its turns, and what of them was played."""

from collections import deque
from collections.abc import Sequence

from loguru import logger
from pipecat.frames.frames import OutputAudioRawFrame

from pipecat_audio_capture.open_part import FinishedPart, OpenPart, duration_s
from pipecat_audio_capture.records import Playback
from pipecat_audio_capture.track_context import TrackContext

_NONE: tuple[FinishedPart, ...] = ()

_UNWRITTEN_SLACK_S = 0.1
"""Generated audio a turn may leave unwritten without a warning: the transport pads its last
chunk and its resampler holds a few milliseconds, so written and generated never match exactly."""


class BotTrack:
    """Cuts the bot's audio into turns, each holding what was played of it.

    It sees the bot's audio in one of three ways:

    - **Confirmed by a tap** (:meth:`use_tap`): a :class:`~pipecat_audio_capture.PlaybackTap`
      after ``transport.output()`` reports each chunk once the transport wrote it, with the
      transport's speaking frames and the interruption as they leave it. Segments hold exactly
      what was written; the audio the processor itself sees only counts what was generated, so
      that ``unplayed_ms`` is what an interruption dropped.
    - **After the output transport** (noticed from downstream speaking frames): the audio the
      processor sees was just written; the same as a tap, except that generated audio is not
      seen, so ``unplayed_ms`` is unknown.
    - In both confirmed ways, the chunk the transport still writes after a barge-in, before the
      next answer's ``TTSStartedFrame``, is counted in ``ignored_bot_audio_ms``, not recorded.
    - **Estimated**, between TTS and the output transport without a tap: audio arrives faster
      than real time, and a play-out clock predicts it (audio plays back to back from when it
      arrives, re-anchored when the transport reports ``BotStartedSpeakingFrame``).

    Parts are kept in play-out order; before the output transport more than one turn can be
    queued (a greeting and the next answer), each ended by its own ``BotStoppedSpeakingFrame``.
    """

    def __init__(self, context: TrackContext) -> None:
        """Initialize the track.

        Args:
            context: The call's turns, clock, part limits and counters.
        """
        self._context = context
        self._turn_ids = context.turn_ids
        self._timeline = context.timeline
        self._limits = context.limits
        self._stats = context.stats
        self.parts: deque[OpenPart] = deque()
        self.after_output = False
        self.tapped = False
        self._play_cursor = 0.0
        self._head_anchored = False
        self._speaking = False
        self._speaking_since: float | None = None
        # Where the last handed-over part ended: the next audio never starts before it.
        self._last_end = float("-inf")
        self._last_turn: str | None = None
        # With a tap: audio generated (seen by the processor) and written (seen by the tap) since
        # the last interruption or stop, in seconds.
        self._generated_s = 0.0
        self._written_s = 0.0
        # After a barge-in the output transport still writes the chunk it had taken from its
        # queue, and may report BotStartedSpeakingFrame for it first: that chunk is the tail of
        # the interrupted answer, not the start of the next one (which a TTSStartedFrame opens).
        self._tail_pending = False

    def use_tap(self) -> None:
        """Take played audio from a tap after the output transport from now on."""
        self.tapped = True
        self.after_output = True

    def generated(self, frame: OutputAudioRawFrame, audio: bytes) -> None:
        """Count audio on its way to the output transport (with a tap, not recorded here)."""
        self._generated_s += duration_s(len(audio), frame.sample_rate, frame.num_channels)

    def hear(self, frame: OutputAudioRawFrame, audio: bytes) -> Sequence[FinishedPart]:
        """Bot audio (``audio``: its whole samples, not empty): generated, or just played.

        Returns:
            Parts finished by it: the previous turn when another begins after the output
            transport, parts of a long turn that have played, a part ended by a format change.
        """
        now = self._timeline.now()
        seconds = duration_s(len(audio), frame.sample_rate, frame.num_channels)
        if self.after_output:
            tail = self._tail_pending and frame.interruptible
            if tail:
                # Its BotStartedSpeakingFrame, if the transport sent one, marked this chunk, not
                # the start of the next answer.
                self._tail_pending = False
                self._speaking_since = None
            if tail or not self._speaking:
                self._stats.ignored_bot_audio_ms += seconds * 1000.0
                return _NONE
            # Audio past the output transport has just been written. The transport reports
            # BotStartedSpeakingFrame right before it writes the first chunk: a better start for
            # that chunk than its duration, which a slow or bursty write does not take.
            written_from = now - seconds
            if self._speaking_since is not None:
                written_from, self._speaking_since = self._speaking_since, None
            start = max(self._play_cursor, written_from)
        else:
            start = max(self._play_cursor, now)
        # A part already handed over keeps its place on the time line even if the transport
        # disagreed with the play-out clock; the next audio starts after it.
        start = max(start, self._last_end)
        self._play_cursor = start + seconds

        context_id: str | None = getattr(frame, "context_id", None)
        finished: list[FinishedPart] = []
        last = self.parts[-1] if self.parts else None
        if last is None or (
            context_id is not None and last.context_id is not None and context_id != last.context_id
        ):
            if self.after_output:
                # Played audio is final: the previous turn is complete once another one begins.
                finished += self._flush(interrupted=False, unplayed_ms=self._complete_unplayed())
            self._new_turn(frame, start, context_id)
        finished += self._extend(audio, frame, start, now, seconds)
        if len(self.parts) > 1:
            finished += self._release_played_parts(now)
        return finished

    def started(self) -> None:
        """The output transport reported ``BotStartedSpeakingFrame``."""
        if self.after_output and not self._speaking:
            self._speaking_since = self._timeline.now()
        self._speaking = True
        if self.after_output or self._head_anchored or not self.parts:
            return
        # The transport reports the moment the first chunk really starts playing; shift the
        # predicted schedule to it (it only lags, by chunking and scheduling delays).
        delay = self._timeline.now() - self.parts[0].play_start
        if delay > 0:
            for part in self.parts:
                part.shift(delay)
            self._play_cursor += delay
        self._head_anchored = True

    def answer_started(self) -> None:
        """The output transport passed on a ``TTSStartedFrame``: audio from here is a new answer."""
        self._tail_pending = False

    def stopped(self) -> Sequence[FinishedPart]:
        """The output transport reported ``BotStoppedSpeakingFrame``: the playing turn is whole."""
        self._speaking = False
        self._speaking_since = None
        if self.tapped:
            self._settle_unwritten()
        if not self.parts:
            return _NONE
        if not self.after_output and self.parts[0].play_start > self._timeline.now():
            # A stop for audio already closed by an interruption, arriving after the next
            # turn's audio was queued: that turn has not started playing yet.
            return _NONE
        head_turn = self.parts[0].turn_id
        finished: list[FinishedPart] = []
        unplayed = self._complete_unplayed()
        while self.parts and self.parts[0].turn_id == head_turn:
            finished += self._finish(self.parts.popleft(), interrupted=False, unplayed_ms=unplayed)
        self._turn_ids.end_turn(head_turn)
        self._head_anchored = False
        return finished

    def interrupted(self) -> Sequence[FinishedPart]:
        """A barge-in: keep what was played, count what was not."""
        self._tail_pending = self.after_output
        if self.tapped:
            # The transport drops what it had not written yet.
            unplayed_ms = max(0.0, self._generated_s - self._written_s) * 1000.0
            self._generated_s = self._written_s = 0.0
            self._stats.unplayed_ms += unplayed_ms
            return self._flush(interrupted=True, unplayed_ms=unplayed_ms)
        if not self.parts:
            return _NONE
        if self.after_output:
            return self._flush(interrupted=True, unplayed_ms=None)
        return self._cut_at(self._timeline.now())

    def close(self, *, cancelled: bool) -> Sequence[FinishedPart]:
        """The session ends: hand over whatever is open, as interrupted."""
        if cancelled and not self.after_output:
            # CancelFrame drops the transport's queued audio at once, like a barge-in.
            return self._cut_at(self._timeline.now()) if self.parts else _NONE
        if cancelled and self.tapped:
            return self.interrupted()
        # EndFrame and StopFrame let queued audio play out, so all of it is heard.
        return self._flush(interrupted=True, unplayed_ms=self._complete_unplayed())

    def _settle_unwritten(self) -> None:
        """The transport stopped speaking: whatever was generated and never written is gone."""
        unwritten_s = self._generated_s - self._written_s
        self._generated_s = self._written_s = 0.0
        if unwritten_s > _UNWRITTEN_SLACK_S:
            self._stats.unplayed_ms += unwritten_s * 1000.0
            self._context.report(
                "unwritten",
                f"the output transport stopped speaking with {unwritten_s * 1000:.0f} ms of bot "
                "audio generated and never written",
            )

    def _complete_unplayed(self) -> float | None:
        """Return the ``unplayed_ms`` of a turn that played out whole.

        It is known to be 0 unless the processor is after the output transport and sees no
        generated audio.
        """
        return None if self.after_output and not self.tapped else 0.0

    def _new_turn(self, frame: OutputAudioRawFrame, start: float, context_id: str | None) -> None:
        if not self.parts:
            self._head_anchored = self.after_output
        self.parts.append(
            OpenPart(
                turn_id=self._turn_ids.start_turn("bot", at=start),
                speaker="bot",
                sample_rate=frame.sample_rate,
                num_channels=frame.num_channels,
                started_at=self._timeline.wall(start),
                play_start=start,
                limits=self._limits,
                context_id=context_id,
            )
        )

    def _extend(
        self, audio: bytes, frame: OutputAudioRawFrame, start: float, now: float, seconds: float
    ) -> Sequence[FinishedPart]:
        """Add audio to the last part, starting a new part on a format change or the cap."""
        finished: Sequence[FinishedPart] = _NONE
        last = self.parts[-1]
        if not last.muted and not last.takes(len(audio), frame.sample_rate, frame.num_channels):
            part = last.next_part(frame.sample_rate, frame.num_channels, start)
            if part is None:
                self._context.mute(last)
            else:
                if self.after_output:
                    # Played audio is final: hand it over now rather than holding it.
                    finished = self._flush(interrupted=False, unplayed_ms=self._complete_unplayed())
                self.parts.append(part)
                last = part
        if last.muted:
            self._stats.format_churn_ms += seconds * 1000.0
            return finished
        last.append(audio, start)
        if self.after_output:
            last.played_until = now
            if self.tapped:
                self._written_s += seconds
        return finished

    def _release_played_parts(self, now: float) -> list[FinishedPart]:
        """Hand over the parts of a long turn that have finished playing.

        A turn split at ``max_segment_s`` would otherwise keep every played part in memory until
        its ``BotStoppedSpeakingFrame``. Only parts followed by another part of the same turn go:
        a turn's last part waits for its stop, which is what the flush rules key on.
        """
        finished: list[FinishedPart] = []
        parts = self.parts
        while len(parts) > 1 and parts[0].turn_id == parts[1].turn_id and parts[0].play_end <= now:
            finished += self._finish(
                parts.popleft(), interrupted=False, unplayed_ms=self._complete_unplayed()
            )
        return finished

    def _cut_at(self, now: float) -> list[FinishedPart]:
        """Hand over what the play-out clock had played by ``now``; drop (and count) the rest."""
        played: list[OpenPart] = []
        unplayed_s = 0.0
        for part in self.parts:
            keep = part.played_bytes(now)
            unplayed_s += (part.nbytes - keep) / part.byte_rate
            if keep == 0:
                heard = self._last_turn == part.turn_id or any(
                    p.turn_id == part.turn_id for p in played
                )
                if not heard:
                    self._turn_ids.discard_turn(part.turn_id)
                continue
            part.truncate(keep)
            played.append(part)
        self.parts.clear()
        self._play_cursor = now
        self._head_anchored = False
        unplayed_ms = unplayed_s * 1000.0
        self._stats.unplayed_ms += unplayed_ms
        finished: list[FinishedPart] = []
        for index, part in enumerate(played):
            self._turn_ids.end_turn(part.turn_id, at=min(now, part.play_end))
            last = index == len(played) - 1
            finished += self._finish(
                part, interrupted=True, unplayed_ms=unplayed_ms if last else 0.0
            )
        if unplayed_ms and not played:
            logger.debug(f"interruption cut {unplayed_ms:.0f} ms of bot audio before it played")
        return finished

    def _flush(self, *, interrupted: bool, unplayed_ms: float | None) -> list[FinishedPart]:
        """Hand over every open part; ``unplayed_ms`` goes on the last one."""
        finished: list[FinishedPart] = []
        while self.parts:
            part = self.parts.popleft()
            self._turn_ids.end_turn(part.turn_id)
            last = not self.parts
            finished += self._finish(
                part,
                interrupted=interrupted,
                unplayed_ms=unplayed_ms if last or unplayed_ms is None else 0.0,
            )
        self._head_anchored = False
        return finished

    def _finish(
        self, part: OpenPart, *, interrupted: bool, unplayed_ms: float | None
    ) -> Sequence[FinishedPart]:
        if not part.nbytes:
            return _NONE
        self._last_end = max(self._last_end, part.play_end)
        self._last_turn = part.turn_id
        playback: Playback = "confirmed" if self.after_output else "estimated"
        return (FinishedPart(part, interrupted, unplayed_ms, playback),)
