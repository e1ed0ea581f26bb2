"""The call review tests' call and client: a known call with real WAVs, an app on an index, and
a parser for the pages it serves."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from html.parser import HTMLParser

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from pipecat_audio_capture.records import Role, SegmentMetadata, Speaker
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.index import CallLogEntry, MetadataIndex
from pipecat_audio_capture.storage.local import LocalAudioStorage
from pipecat_audio_capture.wav import encode_wav

from support.index import IndexBackend, at, make_segment, make_transcript, new_id

SAMPLE_RATE = 16_000
TOKEN = "6oyr-yAHIyiXVlMhA1SyyjZdSmkcaIgzKRdoxemdbPI"
"""A token as TOKEN_RECIPE makes one."""
SCRIPT = '<script>window.__xss=1</script> & "quoted" </title><b>'
"""A transcript that would run, close an SVG title or break an attribute if it were not escaped."""


@dataclass
class Call:
    """A call with real WAV files (times in ms after ``start_ms``).

    ====  =======  =================================  ==========================================
    turn  speaker  audio                              transcript
    ====  =======  =================================  ==========================================
    1     user     0 - 1000                           "Where is my order?"
    2     bot      1500 - 2500, interrupted, 600      :data:`SCRIPT`, interrupted
                   unplayed
    3     user     2400 - 3000                        none
    4     user     none                               "Thanks." at 3500
    ====  =======  =================================  ==========================================
    """

    session_id: str
    segments: list[SegmentMetadata]
    wavs: list[bytes]
    texts: list[str | None]


async def record_call(
    index: MetadataIndex, files: LocalAudioStorage | GCSAudioStorage, start_ms: float = 0
) -> Call:
    session_id = new_id()
    turns = [new_id() for _ in range(4)]
    shapes: list[tuple[str, Speaker, float, float, bool, float | None]] = [
        (turns[0], "user", 0, 1000, False, None),
        (turns[1], "bot", 1500, 1000, True, 600.0),
        (turns[2], "user", 2400, 600, False, None),
    ]
    segments, wavs = [], []
    for level, (turn_id, speaker, at_ms, duration_ms, interrupted, unplayed_ms) in enumerate(
        shapes, start=1
    ):
        meta = make_segment(
            session_id,
            turn_id=turn_id,
            speaker=speaker,
            start_ms=start_ms + at_ms,
            duration_ms=duration_ms,
            interrupted=interrupted,
            unplayed_ms=unplayed_ms,
        )
        # Every file holds its own sample value, so bytes from the wrong file show.
        samples = np.full(round(duration_ms * SAMPLE_RATE / 1000), 1000 * level, dtype="<i2")
        wav = encode_wav([samples.tobytes()], SAMPLE_RATE, 1)
        url = await files.store_segment(session_id, meta.segment_id, speaker, wav, turn_id=turn_id)
        meta = replace(meta, audio_url=url, byte_size=len(wav))
        await index.save_metadata(session_id, meta)
        segments.append(meta)
        wavs.append(wav)
    texts: list[str | None] = ["Where is my order?", SCRIPT, None, "Thanks."]
    for turn_id, role, text, at_ms, interrupted in [
        (turns[0], "user", texts[0], 0, False),
        (turns[1], "assistant", texts[1], 1500, True),
        (turns[3], "user", texts[3], 3500, False),
    ]:
        assert text is not None
        record = make_transcript(
            session_id, turn_id, role, text, at_ms=start_ms + at_ms, interrupted=interrupted
        )
        await index.save_transcript(record)
    return Call(session_id, segments, wavs, texts)


MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@dataclass
class Review:
    """An index holding calls, its recordings folder, and a client for an app on it."""

    backend: IndexBackend
    files: LocalAudioStorage
    call: Call
    client: TestClient[web.Request, web.Application]
    make_client: MakeClient

    @property
    def store(self) -> MetadataIndex:
        return self.backend.store

    def audio_url(self, segment: int = 0) -> str:
        return f"/audio/{self.call.segments[segment].segment_id}"


sqlite_only = pytest.mark.parametrize("index", ["sqlite"], indirect=True)


class _Collector(HTMLParser):
    """Collects a page's elements, and the text directly inside elements, keyed by tag and first
    class (``span.said``) or by tag alone (``td``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        css = dict(attrs).get("class") or ""
        self._open.append(f"{tag}.{css.split()[0]}" if css else tag)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop().split(".")[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts.setdefault(self._open[-1], []).append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def call_log_entry(
    role: Role,
    start_ms: float,
    duration_ms: float,
    *,
    unplayed_ms: float | None = None,
    segment_count: int = 1,
) -> CallLogEntry:
    started = at(start_ms)
    return CallLogEntry(
        session_id=new_id(),
        turn_id=new_id(),
        role=role,
        text=f"{role} at {start_ms}",
        audio_url=None,
        segment_id=new_id(),
        segment_count=segment_count,
        duration_ms=duration_ms,
        byte_size=None,
        unplayed_ms=unplayed_ms,
        audio_interrupted=unplayed_ms is not None,
        transcript_interrupted=None,
        occurred_at=started,
        started_at=started,
        ended_at=at(start_ms + duration_ms),
    )
