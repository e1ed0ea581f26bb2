"""The call review's pages, rendered on the server from the index's read-side views.

Everything is built with :mod:`pipecat_audio_capture.web.markup`, so every value from the index
is escaped. Pages load one stylesheet and one script from ``/static/`` and carry no inline
script or style, as the Content-Security-Policy demands.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from pipecat_audio_capture import defaults
from pipecat_audio_capture.display import format_clock, format_size, response_gap_by_turn
from pipecat_audio_capture.storage.index import (
    CallLogEntry,
    ResponseGap,
    SessionSummary,
    TurnLatency,
)
from pipecat_audio_capture.web import latency
from pipecat_audio_capture.web.markup import Html, element, fragment
from pipecat_audio_capture.web.timeline import LANE_LABELS, audio_element_id, timeline

TITLE = "Call review"


def sessions_page(summaries: Sequence[SessionSummary], page: int, has_next: bool) -> Html:
    """Return the list of calls, newest first: one page of ``session_summary``.

    Args:
        summaries: The calls of this page.
        page: The page number, from 1.
        has_next: Whether older calls follow on the next page.
    """
    if summaries:
        body = _sessions_table(summaries)
    else:
        body = element("p", {"class": "empty"}, "No calls are recorded in this index yet.")
    pages = []
    if page > 1:
        pages.append(element("a", {"href": _page_url(page - 1), "rel": "prev"}, "← newer calls"))
    pages.append(element("span", {"class": "page"}, f"page {page}"))
    if has_next:
        pages.append(element("a", {"href": _page_url(page + 1), "rel": "next"}, "older calls →"))
    return _layout(
        TITLE if page == 1 else f"{TITLE}, page {page}",
        element("h1", None, "Calls"),
        body,
        element("nav", {"class": "pages"}, *pages),
    )


@dataclass(frozen=True)
class WholeCall:
    """The page's whole-call player, or why it has none.

    Parameters:
        started_at: When the recording's first frame was spoken (UTC), if it plays here.
        problem: Why it does not, for the reviewer.
    """

    started_at: datetime | None = None
    problem: str | None = None


def call_audio_url(session_id: str) -> str:
    """Return the path of a call's stereo recording."""
    return f"/sessions/{quote(session_id, safe='')}/call.wav"


def session_page(
    session_id: str,
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    *,
    more: bool = False,
    parts: Mapping[str, Sequence[str]] | None = None,
    latencies: Sequence[TurnLatency] = (),
    whole_call: WholeCall | None = None,
) -> Html:
    """Return the page of one call.

    The whole-call player, a picture of who spoke when (with each response's latency), then
    every turn in spoken order, then the latency table.

    Args:
        session_id: The call's UUID.
        entries: Its ``session_call_log`` rows in spoken order (at least one).
        gaps: Its ``session_response_gaps`` rows.
        more: Whether the call has turns after ``entries`` (the page then says so).
        parts: The segment ids of each turn's parts in time order, by ``turn_id``; a turn not
            in it plays its first part (``segment_id``) only.
        latencies: Its ``session_turn_latency`` rows; those of the turns shown are drawn.
        whole_call: The whole-call player; None leaves it out.
    """
    started = entries[0].occurred_at
    ends = [entry.ended_at or entry.occurred_at for entry in entries]
    length_s = (max(ends) - started).total_seconds()
    interrupted = sum(1 for entry in entries if _interrupted(entry))
    turns = f"{'the first ' if more else ''}{len(entries)} turn{'' if len(entries) == 1 else 's'}"
    facts = (
        f"{turns}, {format_clock(length_s)} long, {interrupted} interrupted; "
        "times are since the call started"
    )
    numbers = {
        entry.turn_id: number
        for number, entry in enumerate(entries, start=1)
        if entry.turn_id and entry.role == "assistant"
    }
    shown_latencies = {row.turn_id: row for row in latencies if row.turn_id in numbers}
    offset_s = (
        (whole_call.started_at - started).total_seconds()
        if whole_call is not None and whole_call.started_at is not None
        else None
    )
    picture = timeline(entries, latencies=shown_latencies, audio_offset_s=offset_s)
    legend = _legend(seekable=offset_s is not None, latency_shown=bool(shown_latencies))
    figure = (
        element(
            "figure",
            {"class": "call-picture"},
            picture,
            element("figcaption", None, legend),
        )
        if picture
        else Html("")
    )
    latency_rows = sorted((numbers[turn_id], row) for turn_id, row in shown_latencies.items())
    return _layout(
        f"{TITLE}: call of {_utc(started)}",
        element("p", {"class": "back"}, element("a", {"href": "/"}, "← all calls")),
        element("h1", None, f"Call of {_utc(started)}"),
        element("p", {"class": "session-id"}, "session ", element("code", None, session_id)),
        element("p", {"class": "facts"}, facts),
        _whole_call(session_id, whole_call),
        figure,
        element("h2", None, "Call log"),
        _call_log_table(entries, gaps, parts or {}),
        _more_turns(more),
        latency.latency_table(latency_rows),
    )


def _whole_call(session_id: str, whole_call: WholeCall | None) -> Html:
    if whole_call is None:
        return Html("")
    if whole_call.started_at is None:
        why = whole_call.problem or "the call has no audio to play"
        return element(
            "p",
            {"class": "whole-call unavailable"},
            "The whole-call player is unavailable: ",
            why,
            ". Each turn still plays below.",
        )
    player = element(
        "audio",
        {
            "id": "call-audio",
            "controls": True,
            "preload": "metadata",
            "src": call_audio_url(session_id),
        },
        "the whole call",
    )
    note = "The whole call: user on the left channel, bot on the right."
    return element(
        "div",
        {"class": "whole-call"},
        player,
        element("span", {"class": "whole-call-note"}, note),
    )


def _more_turns(more: bool) -> Html:
    if not more:
        return Html("")
    note = "This call has more turns than a page shows: the command line lists them all (show)."
    return element("p", {"class": "more-turns"}, note)


def _layout(title: str, *content: str) -> Html:
    head = element(
        "head",
        None,
        element("meta", {"charset": "utf-8"}),
        element("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        element("title", None, title),
        element("link", {"rel": "stylesheet", "href": "/static/review.css"}),
        element("script", {"src": "/static/review.js", "defer": True}),
    )
    body = element("body", None, element("main", None, *content))
    return Html("<!doctype html>\n" + element("html", {"lang": "en"}, head, body))


def _sessions_table(summaries: Sequence[SessionSummary]) -> Html:
    headers = ["Started (UTC)", "Length", "Turns", "User talk", "Bot talk", "Interruptions"]
    headers += ["Size", "Session"]
    rows = []
    for summary in summaries:
        href = f"/sessions/{quote(summary.session_id, safe='')}"
        length_s = (summary.ended_at - summary.started_at).total_seconds()
        cells = [
            element("a", {"href": href}, _utc(summary.started_at)),
            format_clock(length_s),
            str(summary.turns),
            _seconds(summary.user_talk_ms),
            _seconds(summary.bot_talk_ms),
            str(summary.interruptions),
            format_size(summary.bytes),
            element("a", {"href": href}, element("code", None, summary.session_id)),
        ]
        rows.append(element("tr", None, *(element("td", None, cell) for cell in cells)))
    return _table("sessions", headers, rows)


def _call_log_table(
    entries: Sequence[CallLogEntry],
    gaps: Sequence[ResponseGap],
    parts: Mapping[str, Sequence[str]],
) -> Html:
    headers = ["#", "At", "Role", "Text", "Duration", "Response gap", "Interrupted", "Audio"]
    gap_of = response_gap_by_turn(gaps)
    start = entries[0].occurred_at
    rows = []
    for number, entry in enumerate(entries, start=1):
        role = LANE_LABELS[entry.role]
        gap = gap_of.get(entry.turn_id) if entry.role == "assistant" else None
        text = (
            element("em", None, "(no transcript)")
            if entry.text is None
            else element("span", {"class": "said"}, entry.text)
        )
        cells = [
            str(number),
            format_clock((entry.occurred_at - start).total_seconds()),
            element("span", {"class": f"role {role}"}, role),
            text,
            _seconds(entry.duration_ms),
            _seconds(gap),
            _interruption(entry),
            _audio(number, entry, parts),
        ]
        attrs = {"id": f"turn-{number}", "class": f"turn-row {role}"}
        rows.append(element("tr", attrs, *(element("td", None, cell) for cell in cells)))
    return _table("call-log", headers, rows)


def _table(css_class: str, headers: Sequence[str], rows: Sequence[str]) -> Html:
    head = element("thead", None, element("tr", None, *(element("th", None, h) for h in headers)))
    return element("table", {"class": css_class}, head, element("tbody", None, *rows))


def _audio(number: int, entry: CallLogEntry, parts: Mapping[str, Sequence[str]]) -> Html:
    """The turn's players: one per part of its audio, each starting the next when it ends."""
    if entry.segment_id is None:
        return element("span", {"class": "no-audio"}, "no audio")
    found = parts.get(entry.turn_id or "") or ()
    segment_ids = list(found) if entry.segment_id in found else [entry.segment_id]
    count = max(entry.segment_count, len(segment_ids))
    listed = segment_ids[: defaults.SERVE_MAX_TURN_PARTS]
    players = []
    for part, segment_id in enumerate(listed, start=1):
        last = part == len(listed)
        player = element(
            "audio",
            {
                "id": _part_id(number, part),
                "controls": True,
                "preload": "metadata",
                "src": f"/audio/{quote(segment_id, safe='')}",
                "data-next": None if last else _part_id(number, part + 1),
            },
            "audio of turn ",
            str(number),
        )
        players.append(player)
        if count > 1:
            players.append(element("span", {"class": "parts"}, f"part {part} of {count}"))
    if count > len(listed):
        missing = f"parts {len(listed) + 1} to {count} play in the whole call only"
        players.append(element("span", {"class": "parts"}, missing))
    return fragment(*players)


def _part_id(number: int, part: int) -> str:
    """The ``<audio>`` id of a turn's part: the turn's own id for its first part."""
    first = audio_element_id(number)
    return first if part == 1 else f"{first}-part-{part}"


def _interruption(entry: CallLogEntry) -> Html:
    if not _interrupted(entry):
        return Html("")
    mark = element("span", {"class": "interrupted"}, "interrupted")
    if not entry.unplayed_ms:
        return mark
    unplayed = f"{entry.unplayed_ms / 1000:.2f} s never played"
    return fragment(mark, element("span", {"class": "unplayed-note"}, unplayed))


def _interrupted(entry: CallLogEntry) -> bool:
    return bool(entry.audio_interrupted or entry.transcript_interrupted)


def _legend(*, seekable: bool, latency_shown: bool) -> Html:
    keys = [("user", "user"), ("bot", "bot"), ("cut", "cut short"), ("unplayed", "never played")]
    items = [
        element("span", {"class": "key"}, element("span", {"class": f"swatch {kind}"}), label)
        for kind, label in keys
    ]
    text = (
        "Select a point to play the call from there." if seekable else "Select a turn to play it."
    )
    stages = latency.legend() if latency_shown else Html("")
    return fragment(*items, stages, element("span", {"class": "hint"}, text))


def _page_url(page: int) -> str:
    return "/" if page == 1 else f"/?page={page}"


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _seconds(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f} s"
