"""Why a response was slow, on the review page: a bar before each bot turn and a table.

Drawn from ``session_turn_latency`` (one row per bot turn): the wait from the caller falling
silent (or, for a greeting, the client connecting) to the bot speaking, split into Pipecat's
stages. The stage columns are fixed, so each bar is at most :data:`STAGES` rectangles, whatever
the row's ``stages`` JSON holds; only rows of the bot turns the page shows are drawn.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from pipecat_audio_capture.storage.index import TurnLatency
from pipecat_audio_capture.web.markup import Attribute, Html, element, fragment


@dataclass(frozen=True)
class Stage:
    """A stage column of ``session_turn_latency`` as the page shows it.

    Parameters:
        column: The :class:`TurnLatency` field.
        label: How the page words it.
        kind: Its colour (a CSS class): ``wait``, ``stt``, ``turn``, ``llm``, ``tts`` or
            ``pipeline``.
    """

    column: str
    label: str
    kind: str


STAGES = (
    Stage("endpointing_wait_ms", "end-of-speech wait", "wait"),
    Stage("waiting_for_user_ms", "waiting for the user", "wait"),
    Stage("first_request_ms", "first request", "llm"),
    Stage("transcription_ms", "transcription", "stt"),
    Stage("turn_detection_ms", "turn detection", "turn"),
    Stage("turn_completion_ms", "turn completion", "turn"),
    Stage("llm_inference_ms", "LLM", "llm"),
    Stage("llm_tool_call_ms", "LLM tool call", "llm"),
    Stage("function_handler_ms", "function handlers", "llm"),
    Stage("awaiting_speakable_text_ms", "awaiting speakable text", "llm"),
    Stage("sentence_aggregation_ms", "sentence aggregation", "tts"),
    Stage("speech_synthesis_ms", "TTS", "tts"),
    Stage("output_transport_ms", "output transport", "pipeline"),
    Stage("pipeline_ms", "pipeline", "pipeline"),
    Stage("other_ms", "other", "pipeline"),
)
"""In the order a response goes through them."""

KINDS = {
    "wait": "end-of-speech wait",
    "stt": "transcription",
    "turn": "turn detection",
    "llm": "LLM",
    "tts": "TTS",
    "pipeline": "transport and pipeline",
}
"""The legend: each colour and what it stands for."""


@dataclass(frozen=True)
class Part:
    """One stage of one response, in milliseconds."""

    stage: Stage
    ms: float


def parts(latency: TurnLatency) -> list[Part]:
    """Return the stages a response went through (those that took time), in order.

    A value that is not a finite positive number (a hand-edited row) is left out.
    """
    found = []
    for stage in STAGES:
        value = getattr(latency, stage.column)
        if isinstance(value, int | float) and 0 < value < float("inf"):
            found.append(Part(stage, float(value)))
    return found


def stage_label(key: str) -> str:
    """Return how the page words one of Pipecat's stage keys (the key itself if unknown)."""
    column = f"{key}_ms"
    return next((stage.label for stage in STAGES if stage.column == column), key)


def describe(latency: TurnLatency) -> str:
    """Return a response's breakdown as one line: ``"LLM 812 ms, TTS 359 ms, ..."``."""
    return ", ".join(f"{part.stage.label} {part.ms:.0f} ms" for part in parts(latency))


def bar(
    latency: TurnLatency,
    number: int,
    *,
    x0: float,
    x1: float,
    top: float,
    height: float,
) -> Html:
    """Return the bar of one response between ``x0`` and ``x1``, one rectangle per stage.

    Args:
        latency: The response.
        number: The call log number of its bot turn.
        x0: Where the wait began (viewBox units).
        x1: Where the bot started speaking.
        top: Top of the bar.
        height: Height of the bar.
    """
    shown = parts(latency)
    total_ms = sum(part.ms for part in shown)
    summary = f"turn {number}: the bot answered after {latency.total_ms:.0f} ms"
    if latency.slowest_stage:
        summary += f"; slowest: {stage_label(latency.slowest_stage)} ({latency.slowest_owner})"
    pieces = []
    x = x0
    for part in shown:
        width = (x1 - x0) * part.ms / total_ms
        box: dict[str, Attribute] = {
            "class": f"stage {part.stage.kind}",
            "x": f"{x:.2f}",
            "y": top,
            "width": f"{width:.2f}",
            "height": height,
        }
        title = f"turn {number}: {part.stage.label} {part.ms:.0f} ms"
        pieces.append(element("rect", box, element("title", None, title)))
        x += width
    return element(
        "g",
        {"class": "latency", "data-latency-turn": number},
        element("title", None, summary),
        *pieces,
    )


def latency_table(rows: Sequence[tuple[int, TurnLatency]]) -> Html:
    """Return the table of the responses' breakdowns, one row per bot turn (none: nothing).

    Args:
        rows: Each bot turn's call log number and its breakdown, in spoken order.
    """
    if not rows:
        return Html("")
    headers = ["#", "Waited for", "Measured from", "Breakdown", "Slowest"]
    body = []
    for number, latency in rows:
        measured = "caller's silence" if latency.measured_from == "user_silence" else "connect"
        slowest = (
            fragment(
                stage_label(latency.slowest_stage),
                " ",
                element("code", None, latency.slowest_owner),
            )
            if latency.slowest_stage
            else Html("")
        )
        cells = [
            element("a", {"href": f"#turn-{number}"}, str(number)),
            f"{latency.total_ms / 1000:.2f} s",
            measured,
            describe(latency),
            slowest,
        ]
        attrs = {"id": f"latency-{number}", "class": "latency-row"}
        body.append(element("tr", attrs, *(element("td", None, cell) for cell in cells)))
    head = element("thead", None, element("tr", None, *(element("th", None, h) for h in headers)))
    return fragment(
        element("h2", None, "Response latency"),
        element(
            "p",
            {"class": "latency-note"},
            "How long each bot turn took to start, from Pipecat's UserBotLatencyObserver.",
        ),
        element("table", {"class": "latency-table"}, head, element("tbody", None, *body)),
    )


def legend() -> Html:
    """Return the key of the stage colours."""
    keys = [
        element("span", {"class": "key"}, element("span", {"class": f"swatch stage {kind}"}), text)
        for kind, text in KINDS.items()
    ]
    return element("span", {"class": "latency-key"}, *keys)
