"""A call as a picture: the user's and the bot's turns on one time axis, as inline SVG.

Drawn from the index alone (each turn's ``started_at``, ``ended_at`` and ``unplayed_ms``); no
audio is read. Each turn with audio is a rectangle in its speaker's lane whose ``data-turn``
names the turn's ``<audio>`` element, so a click plays it (``static/review.js``). An interrupted
bot turn ends in a red cut marker, followed by a hatched stretch for the audio that was generated
but never played, when the recorder knows how much: as long as that audio, or up to the bot's
next turn, and never longer than the call itself (its title tells the whole amount). Turns with a
transcript only appear in the call log, not here. Colours and fonts come from
``static/review.css``.

Below the lanes, a bot turn whose response was timed (``session_turn_latency``) has a bar as long
as the wait, ending where the turn starts, split into its stages (see :mod:`.latency`). When the
page plays the whole call, the picture also carries a cursor and the numbers ``review.js`` needs
to move it with the player and to turn a click into a seek (``data-plot-left``,
``data-plot-width``, ``data-span-s``, ``data-audio-offset-s``: where the recording's first frame
lies on the axis).

Whatever the index holds, the picture is bounded: a few elements per turn (and at most
:data:`~.latency.STAGES` per latency bar), at most
:data:`MAX_TICKS` + 1 ticks (the step grows with the span), and an unplayed stretch clamped to
the call's length, so one absurd ``unplayed_ms`` cannot make the axis, or the page, huge.
"""

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pipecat_audio_capture.display import format_clock
from pipecat_audio_capture.storage.index import CallLogEntry, TurnLatency
from pipecat_audio_capture.web.latency import bar
from pipecat_audio_capture.web.markup import Attribute, Html, element, fragment

WIDTH = 1000
"""Width of the viewBox; the picture scales to the page's width."""
LEFT = 56
RIGHT = 16
TOP = 8
LANE_HEIGHT = 34
LANE_GAP = 10
LATENCY_TOP = TOP + 2 * LANE_HEIGHT + LANE_GAP + 4
LATENCY_HEIGHT = 10
AXIS_Y = LATENCY_TOP + LATENCY_HEIGHT + 4
AXIS_HEIGHT = 30
HEIGHT = AXIS_Y + AXIS_HEIGHT
MIN_TURN_WIDTH = 3.0
"""Narrowest a turn is drawn, in viewBox units, so that a very short turn can still be clicked."""
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_TICKS = 10
"""Most ticks on the axis, plus the one at 0; past the longest step, the step is whole hours."""

LANE_TOPS = {"user": TOP, "assistant": TOP + LANE_HEIGHT + LANE_GAP}
LANE_LABELS = {"user": "user", "assistant": "bot"}


def audio_element_id(number: int) -> str:
    """Return the id of the ``<audio>`` element of the call log's turn ``number`` (1-based)."""
    return f"audio-{number}"


def _is_cut_bot_turn(entry: CallLogEntry) -> bool:
    """Whether a turn is a bot turn that the audio or the transcript side flagged as cut short."""
    return entry.role == "assistant" and bool(
        entry.audio_interrupted or entry.transcript_interrupted
    )


@dataclass(frozen=True)
class _Turn:
    """A turn with audio, in seconds since the call started."""

    number: int
    entry: CallLogEntry
    begin_s: float
    end_s: float
    cut: bool
    unplayed_s: float
    hatch_end_s: float
    """Where the hatched stretch of unplayed audio ends (``end_s`` when there is none)."""


def timeline(
    entries: Sequence[CallLogEntry],
    *,
    latencies: Mapping[str, TurnLatency] | None = None,
    audio_offset_s: float | None = None,
) -> Html:
    """Return the picture of a call, or nothing when no turn has audio.

    Args:
        entries: The call log in spoken order; time 0 is the first turn's ``occurred_at``, as in
            the log's "at" column.
        latencies: Latency breakdowns by bot ``turn_id``: each drawn turn's is a bar before it.
        audio_offset_s: Where the whole-call recording's first frame lies on this time axis;
            given, the picture carries a cursor and what ``review.js`` needs to move it and to
            seek (``data-*`` attributes), and a click on it plays the whole call from there.
    """
    turns = _turns_with_audio(entries)
    if not turns:
        return Html("")
    # The hatched stretch of a cut turn may reach past the call's end; the axis covers it.
    span_s = max(max(turn.hatch_end_s for turn in turns), 0.001)
    seekable = audio_offset_s is not None
    attrs: dict[str, Attribute] = {
        "class": f"timeline{' seekable' if seekable else ''}",
        "viewBox": f"0 0 {WIDTH} {HEIGHT}",
        "role": "group",
        "aria-label": (
            "who spoke when; select a point to play the call from there"
            if seekable
            else "who spoke when; select a turn to play it"
        ),
    }
    if seekable:
        attrs |= {
            "id": "call-timeline",
            "data-plot-left": LEFT,
            "data-plot-width": WIDTH - LEFT - RIGHT,
            "data-span-s": f"{span_s:.3f}",
            "data-audio-offset-s": f"{audio_offset_s:.3f}",
        }
    bars = _latency_bars(turns, latencies or {}, span_s)
    return element(
        "svg",
        attrs,
        _definitions(),
        _lanes(),
        _ticks(span_s),
        *bars,
        *(_turn(turn, span_s) for turn in turns),
        _cursor() if seekable else Html(""),
    )


def _latency_bars(
    turns: Sequence[_Turn],
    latencies: Mapping[str, TurnLatency],
    span_s: float,
) -> list[Html]:
    """Return one bar per drawn bot turn that has a breakdown, and the row's label.

    Each bar is as long as the wait and ends where the turn starts; nothing is returned when no
    drawn turn has a breakdown.
    """
    bars = []
    for turn in turns:
        if turn.entry.role != "assistant" or turn.entry.turn_id is None:
            continue
        latency = latencies.get(turn.entry.turn_id)
        if latency is None or not 0 < latency.total_ms < float("inf"):
            continue
        # Anchored to the turn's audio, not to the row's own clock: the observer times the
        # bot's start when the transport reports it, a few frames from the audio's first sample.
        end_s = turn.begin_s
        begin_s = min(max(end_s - latency.total_ms / 1000, 0.0), end_s)
        x0, x1 = _x(begin_s, span_s), _x(end_s, span_s)
        x0 = max(min(x0, x1 - MIN_TURN_WIDTH), float(LEFT))
        bars.append(bar(latency, turn.number, x0=x0, x1=x1, top=LATENCY_TOP, height=LATENCY_HEIGHT))
    if not bars:
        return []
    label: dict[str, Attribute] = {
        "class": "lane-label latency-label",
        "x": LEFT - 8,
        "y": LATENCY_TOP + LATENCY_HEIGHT - 1,
    }
    return [element("text", label, "wait"), *bars]


def _cursor() -> Html:
    ends: dict[str, Attribute] = {"x1": LEFT, "x2": LEFT, "y1": TOP - 4, "y2": AXIS_Y}
    return element("line", {"id": "call-cursor", "class": "cursor", **ends})


def _turns_with_audio(entries: Sequence[CallLogEntry]) -> list[_Turn]:
    if not entries:
        return []
    start = entries[0].occurred_at
    turns = []
    for number, entry in enumerate(entries, start=1):
        if entry.started_at is None or entry.ended_at is None:
            continue
        cut = _is_cut_bot_turn(entry)
        # The index's CHECKs keep ends after starts, but nothing keeps a turn after the first.
        begin_s = max((entry.started_at - start).total_seconds(), 0.0)
        end_s = max((entry.ended_at - start).total_seconds(), begin_s)
        unplayed_s = (entry.unplayed_ms or 0.0) / 1000 if cut else 0.0
        turns.append(
            _Turn(
                number=number,
                entry=entry,
                begin_s=begin_s,
                end_s=end_s,
                cut=cut,
                unplayed_s=unplayed_s,
                hatch_end_s=end_s + unplayed_s,
            )
        )
    call_s = max((turn.end_s for turn in turns), default=0.0)
    # Drawn past the bot's next turn, the stretch would read as that turn being cut too; drawn
    # longer than the call, it would squeeze the call into a corner of its own picture.
    # Turns are in spoken order, so bot turns are sorted by start and a bisection finds the
    # first later one that starts after this turn ends.
    bot_starts = [
        (turn.begin_s, index) for index, turn in enumerate(turns) if turn.entry.role == "assistant"
    ]
    for index, turn in enumerate(turns):
        if not turn.unplayed_s:
            continue
        hatch_end_s = turn.end_s + min(turn.unplayed_s, call_s)
        found = bisect.bisect_left(bot_starts, (turn.end_s, index + 1))
        if found < len(bot_starts):
            hatch_end_s = min(hatch_end_s, bot_starts[found][0])
        clamped = replace(turn, hatch_end_s=hatch_end_s)
        turns[index] = clamped
    return turns


def _x(seconds: float, span_s: float) -> float:
    return LEFT + seconds / span_s * (WIDTH - LEFT - RIGHT)


def _definitions() -> Html:
    stripe = element("rect", {"class": "unplayed-stripe", "width": 3, "height": 6})
    pattern = element(
        "pattern",
        {
            "id": "unplayed-hatch",
            "patternUnits": "userSpaceOnUse",
            "width": 6,
            "height": 6,
            "patternTransform": "rotate(45)",
        },
        stripe,
    )
    return element("defs", None, pattern)


def _lanes() -> Html:
    parts = []
    for role, top in LANE_TOPS.items():
        box: dict[str, Attribute] = {
            "x": LEFT,
            "y": top,
            "width": WIDTH - LEFT - RIGHT,
            "height": LANE_HEIGHT,
        }
        parts.append(element("rect", {"class": "lane", **box}))
        label: dict[str, Attribute] = {
            "class": "lane-label",
            "x": LEFT - 8,
            "y": top + LANE_HEIGHT / 2 + 5,
        }
        parts.append(element("text", label, LANE_LABELS[role]))
    return fragment(*parts)


def _tick_step_s(span_s: float) -> int:
    """Return the smallest step that puts at most :data:`MAX_TICKS` steps on the span."""
    step = next((step for step in TICK_STEPS_S if span_s / step <= MAX_TICKS), None)
    if step is not None:
        return step
    hour = TICK_STEPS_S[-1]
    return math.ceil(span_s / MAX_TICKS / hour) * hour


def _ticks(span_s: float) -> Html:
    step = _tick_step_s(span_s)
    axis_y = AXIS_Y
    parts = []
    for index in range(int(span_s // step) + 1):
        seconds = index * step
        x = _fmt(_x(seconds, span_s))
        parts.append(element("line", {"class": "tick", "x1": x, "x2": x, "y1": TOP, "y2": axis_y}))
        minutes, secs = divmod(seconds, 60)
        label: dict[str, Attribute] = {"class": "tick-label", "x": x, "y": axis_y + 18}
        parts.append(element("text", label, f"{minutes}:{secs:02d}"))
    return fragment(*parts)


def _turn(turn: _Turn, span_s: float) -> Html:
    entry = turn.entry
    x0 = _x(turn.begin_s, span_s)
    width = max(_x(turn.end_s, span_s) - x0, MIN_TURN_WIDTH)
    x1 = x0 + width
    top = LANE_TOPS[entry.role] + 3
    bar: dict[str, Attribute] = {"y": top, "height": LANE_HEIGHT - 6}
    role = LANE_LABELS[entry.role]
    said = entry.text if entry.text is not None else "(no transcript)"
    summary = (
        f"turn {turn.number}, {role}, {format_clock(turn.begin_s)} to {format_clock(turn.end_s)}"
        f"{', interrupted' if turn.cut else ''}: {said}"
    )
    parts = [
        element(
            "rect",
            {
                "class": f"turn {role}{' interrupted' if turn.cut else ''}",
                "x": _fmt(x0),
                "width": _fmt(width),
                **bar,
                "rx": 3,
                "data-turn": audio_element_id(turn.number),
                "data-begin-s": f"{turn.begin_s:.3f}",
                "data-end-s": f"{turn.end_s:.3f}",
                "tabindex": 0,
                "role": "button",
                "aria-label": f"play turn {turn.number} ({role})",
            },
            element("title", None, summary),
        )
    ]
    if turn.unplayed_s:
        unplayed_width = max(_x(turn.hatch_end_s, span_s) - x1, 0.0)
        note = f"turn {turn.number}: {turn.unplayed_s:.2f} s generated but never played"
        parts.append(
            element(
                "rect",
                {"class": "unplayed", "x": _fmt(x1), "width": _fmt(unplayed_width), **bar},
                element("title", None, note),
            )
        )
    if turn.cut:
        cut_x = _fmt(x1)
        ends = {"y1": top - 3, "y2": top + LANE_HEIGHT - 3}
        parts.append(element("line", {"class": "cut", "x1": cut_x, "x2": cut_x, **ends}))
    return fragment(*parts)


def _fmt(value: float) -> str:
    """Return a coordinate with two decimals: enough at this scale, and short to send."""
    return f"{value:.2f}"
