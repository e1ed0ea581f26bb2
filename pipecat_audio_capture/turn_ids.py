"""Turn ids shared between the audio processor and whoever writes transcripts.

The processor and the context aggregators see a turn's start at slightly different moments and in
no fixed order (``on_user_turn_started`` fires in the user aggregator, upstream of the processor;
an assistant turn opens when ``LLMFullResponseStartFrame`` reaches the assistant aggregator, before
or after its audio reaches the processor), and a user transcript may be final only after the next
user turn has begun. So ``TurnIds`` does not hand out "the current id" alone: it keeps a short
timeline of each speaker's turns, and a transcript writer *claims* the audio turn that matches the
transcript's own start time (and, for the bot, the window in which the assistant turn ran).
"""

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from pipecat_audio_capture import defaults
from pipecat_audio_capture.clock import Clock
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import Speaker


@dataclass
class TurnSpan:
    """One speaking turn as the audio side saw it.

    Parameters:
        turn_id: UUID of the turn.
        speaker: ``"user"`` or ``"bot"``.
        started_at: ``time.monotonic()`` when the turn started (for the bot: when its audio
            started playing).
        ended_at: ``time.monotonic()`` when it ended, or None while it is open.
        claimed: Whether a transcript has taken this turn's id.
    """

    turn_id: str
    speaker: Speaker
    started_at: float
    ended_at: float | None = None
    claimed: bool = False


class TurnIds:
    """The shared turn-id state of one call.

    The audio processor calls :meth:`start_turn` and :meth:`end_turn`. A transcript writer reads
    :attr:`user` / :attr:`bot` for the turn in progress, or, to stay right when events arrive late
    or out of order, calls :meth:`claim` with the times the aggregator reported.
    """

    def __init__(
        self,
        *,
        history: int = defaults.TURN_HISTORY,
        tolerance_s: float = defaults.TURN_MATCH_TOLERANCE_S,
        clock: Clock = time.monotonic,
    ) -> None:
        """Initialize the shared state.

        Args:
            history: Turns remembered per speaker.
            tolerance_s: Largest gap between a transcript's start and its audio turn's start.
            clock: Monotonic clock in seconds (the processor's and the writer's must agree).
        """
        self._clock = clock
        self._tolerance_s = tolerance_s
        self._spans: dict[Speaker, deque[TurnSpan]] = {
            "user": deque(maxlen=history),
            "bot": deque(maxlen=history),
        }
        self._changed = asyncio.Event()

    @property
    def clock(self) -> Clock:
        """The monotonic clock of the call, shared with the processor."""
        return self._clock

    def now(self) -> float:
        """The clock ``TurnIds`` compares times with."""
        return self._clock()

    @property
    def user(self) -> str | None:
        """Id of the user turn started last, or None before the first."""
        return self._latest("user")

    @property
    def bot(self) -> str | None:
        """Id of the bot turn started last, or None before the first."""
        return self._latest("bot")

    def spans(self, speaker: Speaker) -> list[TurnSpan]:
        """The remembered turns of ``speaker``, oldest first."""
        return list(self._spans[speaker])

    def start_turn(self, speaker: Speaker, *, at: float | None = None) -> str:
        """Open a new turn and return its new id.

        Args:
            speaker: Who speaks.
            at: Monotonic start time (default: now). The processor passes a future time for bot
                audio that is queued to play.
        """
        span = TurnSpan(turn_id=new_id(), speaker=speaker, started_at=self._at(at))
        self._spans[speaker].append(span)
        self._notify()
        return span.turn_id

    def end_turn(self, turn_id: str, *, at: float | None = None) -> None:
        """Mark a turn as ended (no effect for an unknown id)."""
        span = self._find(turn_id)
        if span is not None:
            span.ended_at = self._at(at)
            self._notify()

    def discard_turn(self, turn_id: str) -> None:
        """Forget a turn that never produced audio (bot audio cut before it played)."""
        for spans in self._spans.values():
            for span in spans:
                if span.turn_id == turn_id:
                    spans.remove(span)
                    return

    def claim(
        self, speaker: Speaker, *, started_at: float, ended_at: float | None = None
    ) -> str | None:
        """Take the id of the audio turn that matches a transcript, if there is one yet.

        A user transcript matches the unclaimed user turn whose start is nearest to
        ``started_at`` (within the tolerance). An assistant transcript matches the earliest
        unclaimed bot turn that started playing between ``started_at`` (less the tolerance) and
        ``ended_at``: the assistant aggregator opens its turn before the audio plays and closes
        it after, or at the interruption.

        Args:
            speaker: ``"user"`` or ``"bot"``.
            started_at: Monotonic time the aggregator reported the turn started.
            ended_at: Monotonic time it reported the turn stopped (bot turns).

        Returns:
            The claimed turn id, or None if no audio turn matches (yet).
        """
        span = self._match(speaker, started_at, ended_at)
        if span is None:
            return None
        span.claimed = True
        return span.turn_id

    async def wait_claim(
        self,
        speaker: Speaker,
        *,
        started_at: float,
        ended_at: float | None = None,
        timeout_s: float = defaults.TURN_CLAIM_WAIT_S,
    ) -> str:
        """Claim the matching turn, waiting up to ``timeout_s`` for it to appear.

        A transcript with no audio turn (the bot was cut before it said anything, or audio
        capture is off) gets a new id of its own after the wait, so its row is still written.
        """
        deadline = self._clock() + timeout_s
        while True:
            turn_id = self.claim(speaker, started_at=started_at, ended_at=ended_at)
            if turn_id is not None:
                return turn_id
            remaining = deadline - self._clock()
            if remaining <= 0:
                return new_id()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
            except TimeoutError:
                continue

    def _match(
        self, speaker: Speaker, started_at: float, ended_at: float | None
    ) -> TurnSpan | None:
        candidates = [span for span in self._spans[speaker] if not span.claimed]
        if speaker == "user":
            near = [s for s in candidates if abs(s.started_at - started_at) <= self._tolerance_s]
            return min(near, key=lambda s: abs(s.started_at - started_at), default=None)
        upper = ended_at if ended_at is not None else float("inf")
        window = [s for s in candidates if started_at - self._tolerance_s <= s.started_at <= upper]
        return min(window, key=lambda s: s.started_at, default=None)

    def _latest(self, speaker: Speaker) -> str | None:
        spans = self._spans[speaker]
        return spans[-1].turn_id if spans else None

    def _find(self, turn_id: str) -> TurnSpan | None:
        for spans in self._spans.values():
            for span in spans:
                if span.turn_id == turn_id:
                    return span
        return None

    def _at(self, at: float | None) -> float:
        return self._clock() if at is None else at

    def _notify(self) -> None:
        self._changed.set()
