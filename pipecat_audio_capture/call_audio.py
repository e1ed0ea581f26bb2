"""The whole call as one stereo WAV, built from its segments: user on the left, bot on the right.

Every segment is placed at its ``started_at`` offset from the call's first segment, resampled with
soxr to one sample rate (by default the highest of the call, so nothing is downsampled). Where
nobody spoke the file is silent; where user and bot overlap (a barge-in) both channels hold
their audio.

The file is built by streaming: the plan (where each segment goes, how long the call is) comes
from the index rows alone, so the header is written first with its final size and the output
needs no seeking. Then the call is written in time order, :data:`~pipecat_audio_capture.defaults.
CALL_AUDIO_BLOCK_S` at a time, each segment read in chunks of that length from a file opened once,
when the write reaches it. At most one segment per channel is open at any time, so memory does not
grow with the call.

Rows are trusted only as far as they agree with the audio. Each segment lasts what its row says
(``duration_ms``): a file holding more is trimmed, one holding less is padded with silence, and
one that cannot be read, or whose header disagrees with its row, is silent in the call. Each such
segment is logged and listed in the :class:`CallAudioReport`, and the rest of the call is built.

Two segments of the same speaker cannot both play on one channel. If a row says a segment starts
before the previous one of the same speaker ends (an odd or hostile index; a split turn's parts
only touch), the later one wins: the earlier segment ends where the later begins, and the cut is
reported. Mixing them would play both at once, each at an arbitrary level, and clip.
"""

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soxr
from loguru import logger

from pipecat_audio_capture import defaults
from pipecat_audio_capture.errors import AudioCaptureError, CallAudioError
from pipecat_audio_capture.limits import format_supported
from pipecat_audio_capture.records import SAMPLE_WIDTH_BYTES, SegmentMetadata
from pipecat_audio_capture.safe_files import open_atomically
from pipecat_audio_capture.wav import HEADER_BYTES, WavFormat, read_wav_header, wav_header

SegmentOpener = Callable[[SegmentMetadata], BinaryIO]
"""Opens a segment's stored WAV for reading, from its first header byte; the build closes it.

For a segment it cannot open it raises ``OSError`` or an
:class:`~pipecat_audio_capture.errors.AudioCaptureError` (a ``StorageError``, say), which the
build reports as that segment's issue; any other exception is a bug and stops the build."""

IssueKind = Literal["refused", "unreadable", "short", "long", "cut"]
"""What went wrong with one segment:

- ``refused``: its row cannot be placed (unknown speaker, unsupported format, impossible
  duration); it is left out.
- ``unreadable``: its audio could not be opened or read, or its header disagrees with its row;
  it is silent from where reading stopped.
- ``short``: its audio ends before its row's duration; the rest is silent.
- ``long``: its audio goes on past its row's duration; the rest is left out.
- ``cut``: a later segment of the same speaker starts before it ends; it ends there.
"""

CHANNELS: dict[str, int] = {"user": 0, "bot": 1}
"""The channel of each speaker: user left, bot right."""

_OUTPUT_CHANNELS = len(CHANNELS)
_TOLERANCE_S = 0.001
"""A segment's audio and its row may disagree by this much (rounding) without a report."""


@dataclass(frozen=True)
class SegmentIssue:
    """One segment that does not play in the call exactly as its row says.

    Parameters:
        segment_id: UUID of the segment.
        speaker: Its speaker, as the row says.
        kind: What went wrong (see :data:`IssueKind`).
        detail: Why, for a person.
    """

    segment_id: str
    speaker: str
    kind: IssueKind
    detail: str


@dataclass(frozen=True)
class Placement:
    """Where one segment goes in the call.

    Parameters:
        segment: The segment's row.
        channel: 0 (user, left) or 1 (bot, right).
        start_frame: First frame of the call it plays at.
        frames: Frames it plays for in the call.
        own_frames: Frames its row's duration makes at the call's rate (more than ``frames``
            when a later segment of the same speaker cuts it).
    """

    segment: SegmentMetadata
    channel: int
    start_frame: int
    frames: int
    own_frames: int


@dataclass(frozen=True)
class CallAudioPlan:
    """The layout of a call's stereo recording, computed from the rows alone.

    Parameters:
        session_id: UUID of the call.
        sample_rate: Sample rate of the recording in Hz.
        started_at: Start of the call's first segment: frame 0 of the recording (UTC).
        num_frames: Length of the recording in frames.
        placements: Segments placed, by channel then time (none of zero frames).
        issues: Rows refused or cut while planning.
    """

    session_id: str
    sample_rate: int
    started_at: datetime
    num_frames: int
    placements: tuple[Placement, ...]
    issues: tuple[SegmentIssue, ...]

    @property
    def wav_bytes(self) -> int:
        """Size of the WAV file, header included (known before it is built)."""
        return HEADER_BYTES + self.num_frames * _OUTPUT_CHANNELS * SAMPLE_WIDTH_BYTES

    @property
    def duration_ms(self) -> float:
        """Length of the recording in milliseconds."""
        return self.num_frames / self.sample_rate * 1000.0


@dataclass
class CallAudioReport:
    """What a stereo call recording holds.

    Parameters:
        plan: The layout it was built to.
        issues: Every segment that does not play as its row says, planning included.
    """

    plan: CallAudioPlan
    issues: list[SegmentIssue] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every segment plays whole, where its row says."""
        return not self.issues


def plan_call_audio(
    segments: Sequence[SegmentMetadata], *, sample_rate: int | None = None
) -> CallAudioPlan:
    """Lay out a call's segments on the stereo timeline.

    Args:
        segments: Every segment of one call (``MetadataIndex.session_segments``), any order.
        sample_rate: Sample rate of the recording in Hz; by default the highest of the
            segments, so none is downsampled.

    Raises:
        CallAudioError: If no segment can be placed, the rows belong to several calls,
            ``sample_rate`` is unsupported, or the recording would not fit a WAV file.
    """
    issues: list[SegmentIssue] = []
    usable = [segment for segment in segments if _placeable(segment, issues)]
    if not usable:
        raise CallAudioError(f"no placeable audio segment among {len(segments)} rows")
    sessions = {segment.session_id for segment in usable}
    if len(sessions) > 1:
        raise CallAudioError(f"the segments belong to {len(sessions)} calls, not one")
    rate = sample_rate or max(segment.sample_rate for segment in usable)
    if not format_supported(rate, _OUTPUT_CHANNELS):
        raise CallAudioError(f"unsupported sample rate for the call recording: {rate} Hz")
    started_at = min(segment.started_at for segment in usable)
    placements: list[Placement] = []
    for channel in sorted(set(CHANNELS.values())):
        track = sorted(
            (
                (_frames(segment.started_at - started_at, rate), segment)
                for segment in usable
                if CHANNELS[segment.speaker] == channel
            ),
            key=lambda item: (item[0], item[1].segment_id),
        )
        placements.extend(_track(track, channel, rate, issues))
    num_frames = max(
        (placement.start_frame + placement.frames for placement in placements), default=0
    )
    plan = CallAudioPlan(
        session_id=usable[0].session_id,
        sample_rate=rate,
        started_at=started_at,
        num_frames=num_frames,
        placements=tuple(placements),
        issues=tuple(issues),
    )
    try:
        wav_header(plan.wav_bytes - HEADER_BYTES, rate, _OUTPUT_CHANNELS)
    except ValueError as exc:
        raise CallAudioError(f"the call recording cannot be a WAV file: {exc}") from exc
    return plan


def write_call_audio(
    segments: Sequence[SegmentMetadata],
    out: BinaryIO | str | os.PathLike[str],
    *,
    open_segment: SegmentOpener,
    sample_rate: int | None = None,
    block_s: float = defaults.CALL_AUDIO_BLOCK_S,
) -> CallAudioReport:
    """Write a call's stereo recording (blocking: run it in a thread from async code).

    Args:
        segments: Every segment of one call (``MetadataIndex.session_segments``), any order.
        out: A binary file to write to (it need not be seekable), or a path, written through a
            temporary file renamed over it once complete.
        open_segment: Opens a segment's stored WAV (see :data:`SegmentOpener`).
        sample_rate: Sample rate of the recording in Hz; by default the highest of the
            segments.
        block_s: Seconds of audio read and written per step.

    Returns:
        The plan it was built to and every segment that does not play as its row says.

    Raises:
        CallAudioError: As :func:`plan_call_audio` does.
        OSError: If writing ``out`` fails.
    """
    plan = plan_call_audio(segments, sample_rate=sample_rate)
    report = CallAudioReport(plan=plan, issues=list(plan.issues))
    if isinstance(out, str | os.PathLike):
        with open_atomically(Path(out)) as file:
            _write(plan, file, open_segment, block_s, report.issues)
    else:
        _write(plan, out, open_segment, block_s, report.issues)
    for issue in report.issues:
        logger.warning(
            f"call {plan.session_id}: {issue.speaker} segment {issue.segment_id} "
            f"{issue.kind}: {issue.detail}"
        )
    return report


def _placeable(segment: SegmentMetadata, issues: list[SegmentIssue]) -> bool:
    """Whether a row can be placed; a row that cannot is reported as refused."""
    if segment.speaker not in CHANNELS:
        problem = f"unknown speaker {segment.speaker!r}"
    elif not format_supported(segment.sample_rate, segment.num_channels):
        problem = f"unsupported format {segment.sample_rate} Hz x {segment.num_channels}"
    elif not 0.0 <= segment.duration_ms < float("inf"):
        problem = f"impossible duration {segment.duration_ms} ms"
    elif segment.started_at.tzinfo is None:
        problem = "naive started_at"
    else:
        return True
    issues.append(SegmentIssue(segment.segment_id, str(segment.speaker), "refused", problem))
    return False


def _frames(offset: timedelta, rate: int) -> int:
    """Frames at ``rate`` in ``offset``, rounded to the nearest, in integer arithmetic."""
    microseconds = offset // timedelta(microseconds=1)
    return (microseconds * rate + 500_000) // 1_000_000


def _track(
    track: list[tuple[int, SegmentMetadata]], channel: int, rate: int, issues: list[SegmentIssue]
) -> Iterator[Placement]:
    """Place one channel's segments (sorted by start), each cut where the next one begins."""
    for index, (start, segment) in enumerate(track):
        own = _frames(timedelta(milliseconds=segment.duration_ms), rate)
        frames = own
        if index + 1 < len(track):
            frames = min(own, track[index + 1][0] - start)
        if own - frames > rate * _TOLERANCE_S:
            cut_by = track[index + 1][1].segment_id
            issues.append(
                SegmentIssue(
                    segment.segment_id,
                    segment.speaker,
                    "cut",
                    f"segment {cut_by} of the same speaker starts {frames / rate * 1000:.1f} ms "
                    f"into it; its last {(own - frames) / rate * 1000:.1f} ms are left out",
                )
            )
        if frames:
            yield Placement(segment, channel, start, frames, own)


def _write(
    plan: CallAudioPlan,
    out: BinaryIO,
    open_segment: SegmentOpener,
    block_s: float,
    issues: list[SegmentIssue],
) -> None:
    block = max(1, round(block_s * plan.sample_rate))
    out.write(wav_header(plan.wav_bytes - HEADER_BYTES, plan.sample_rate, _OUTPUT_CHANNELS))
    tracks = [
        _blocks(
            _channel_audio(
                [p for p in plan.placements if p.channel == channel],
                plan,
                block,
                open_segment,
                issues,
            ),
            block,
        )
        for channel in range(_OUTPUT_CHANNELS)
    ]
    stereo = np.empty((block, _OUTPUT_CHANNELS), dtype="<i2")
    for left, right in zip(*tracks, strict=True):
        frames = len(left)
        stereo[:frames, 0] = left
        stereo[:frames, 1] = right
        out.write(stereo[:frames].tobytes())


def _silence(frames: int, block: int) -> Iterator[np.ndarray]:
    zeros = np.zeros(min(frames, block), dtype="<i2")
    while frames > 0:
        yield zeros[: min(frames, block)]
        frames -= block


def _channel_audio(
    placements: list[Placement],
    plan: CallAudioPlan,
    block: int,
    open_segment: SegmentOpener,
    issues: list[SegmentIssue],
) -> Iterator[np.ndarray]:
    """One channel's samples over the whole call, in pieces of at most about ``block``."""
    cursor = 0
    for placement in placements:
        yield from _silence(placement.start_frame - cursor, block)
        yield from _segment_audio(placement, plan.sample_rate, block, open_segment, issues)
        cursor = placement.start_frame + placement.frames
    yield from _silence(plan.num_frames - cursor, block)


def _blocks(pieces: Iterator[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Regroup pieces of samples into blocks of exactly ``block`` (the last one shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += len(piece)
        while held >= block:
            joined = np.concatenate(pending)
            yield joined[:block]
            rest = joined[block:]
            pending, held = [rest], len(rest)
    if held:
        yield np.concatenate(pending)


def _segment_audio(
    placement: Placement,
    rate: int,
    block: int,
    open_segment: SegmentOpener,
    issues: list[SegmentIssue],
) -> Iterator[np.ndarray]:
    """Exactly ``placement.frames`` mono samples of a segment at ``rate``, silence if need be."""
    segment = placement.segment
    produced = 0

    def report(kind: IssueKind, detail: str) -> None:
        issues.append(SegmentIssue(segment.segment_id, segment.speaker, kind, detail))

    try:
        with closing(open_segment(segment)) as file:
            wav = read_wav_header(file)
            if (wav.sample_rate, wav.num_channels) != (segment.sample_rate, segment.num_channels):
                raise CallAudioError(
                    f"its file is {wav.sample_rate} Hz x {wav.num_channels}, its row says "
                    f"{segment.sample_rate} Hz x {segment.num_channels}"
                )
            announced = round(wav.num_frames * rate / wav.sample_rate)
            if announced - placement.own_frames > rate * _TOLERANCE_S:
                excess_ms = (announced - placement.own_frames) / rate * 1000
                report("long", f"its file holds {excess_ms:.1f} ms more than its row says")
            for samples in _decoded(file, wav, rate, block):
                piece = samples[: placement.frames - produced]
                produced += len(piece)
                yield piece
                if produced == placement.frames:
                    break
    except (OSError, ValueError, AudioCaptureError) as exc:
        report("unreadable", f"silent from {produced / rate * 1000:.1f} ms: {exc}")
    else:
        missing = placement.frames - produced
        if missing > rate * _TOLERANCE_S:
            report("short", f"its audio ends {missing / rate * 1000:.1f} ms early")
    yield from _silence(placement.frames - produced, block)


def _decoded(file: BinaryIO, wav: WavFormat, rate: int, block: int) -> Iterator[np.ndarray]:
    """A segment's PCM as mono int16 at ``rate``, read ``block`` output frames' worth at a time.

    Reading stops at the end of the announced data or of the file, whichever comes first.
    """
    resampler = (
        None
        if wav.sample_rate == rate
        else soxr.ResampleStream(wav.sample_rate, rate, 1, dtype="int16")
    )
    read_frames = max(1, round(block * wav.sample_rate / rate))
    remaining = wav.num_frames
    while True:
        data = _read_up_to(file, min(read_frames, remaining) * wav.frame_bytes)
        frames = len(data) // wav.frame_bytes
        remaining -= frames
        samples = np.frombuffer(data, dtype="<i2", count=frames * wav.num_channels)
        mono = _mono(samples.reshape(frames, wav.num_channels))
        last = frames < read_frames or remaining == 0
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=last)
        if len(mono):
            yield mono
        if last:
            return


def _mono(frames: np.ndarray) -> np.ndarray:
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.int16)
    mixed: np.ndarray = frames.astype(np.int32).sum(axis=1) // frames.shape[1]
    return mixed.astype(np.int16)


def _read_up_to(file: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the file (a stream may return less)."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = file.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)
