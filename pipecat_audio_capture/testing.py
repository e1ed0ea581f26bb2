"""Helpers for users' own tests.

A collector that keeps segments in memory, and a frame script that records both speakers with
Pipecat's ``run_test``.
"""

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame

from pipecat_audio_capture.ids import new_id, require_uuid
from pipecat_audio_capture.records import PendingAudioSegment, Speaker

MIC_FRAME_S = 0.02
"""One microphone frame: 20 ms, as Pipecat's input transports deliver audio."""

SPEAKER_CHUNK_S = 0.04
"""One chunk written by the output transport: 40 ms, ``BaseOutputTransport``'s default."""

USER_TONE_HZ = 220.0
"""The tone that stands for the caller's speech."""

BOT_TONE_HZ = 440.0
"""The tone that stands for the bot's speech."""

_TONE_AMPLITUDE = 8000


class InMemoryAudioCollector:
    """An :class:`~pipecat_audio_capture.AudioCaptureCollector` that keeps every segment.

    Example::

        collector = InMemoryAudioCollector()
        processor = AudioCaptureProcessor(collector, TurnIds())
        await run_test(processor, frames_to_send=exchange_frames())
        assert [s.speaker for s in collector.segments] == ["user", "bot"]
    """

    def __init__(self, session_id: str | None = None) -> None:
        """Initialize the collector.

        Args:
            session_id: UUID of the call; a new one when omitted.
        """
        self._session_id = require_uuid(session_id, "session_id") if session_id else new_id()
        self.segments: list[PendingAudioSegment] = []

    @property
    def session_id(self) -> str:
        """UUID of the call."""
        return self._session_id

    def record_segment(self, segment: PendingAudioSegment) -> bool:
        """Keep the segment; always accepted."""
        self.segments.append(segment)
        return True

    def by_speaker(self, speaker: Speaker) -> list[PendingAudioSegment]:
        """The segments of one speaker, in the order they were recorded."""
        return [segment for segment in self.segments if segment.speaker == speaker]


def tone(seconds: float, sample_rate: int, frequency_hz: float) -> bytes:
    """A sine tone as 16-bit mono PCM; a frequency of 0 gives silence.

    Args:
        seconds: Length (rounded to whole samples).
        sample_rate: Samples per second.
        frequency_hz: Pitch of the tone.
    """
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = _TONE_AMPLITUDE * np.sin(2 * np.pi * frequency_hz * t)
    return wave.astype("<i2").tobytes()


def exchange_frames(
    *,
    user_speech_s: float = 1.0,
    bot_speech_s: float = 1.0,
    lead_silence_s: float = 0.5,
    response_gap_s: float = 0.3,
    user_sample_rate: int = 16000,
    bot_sample_rate: int = 24000,
) -> list[Frame]:
    """One exchange, the caller speaks and the bot answers, as frames for Pipecat's ``run_test``.

    The frames come in the order and at the pace a real pipeline produces them after
    ``transport.output()``, which is the order ``run_test`` can deliver (it sends every frame
    downstream); :class:`~pipecat_audio_capture.AudioCaptureProcessor` records the same
    turns there as between the TTS and the output transport:

    1. ``lead_silence_s`` of a quiet microphone (what a user segment's pre-roll holds);
    2. ``UserStartedSpeakingFrame`` and the ``InterruptionFrame`` Pipecat sends with every user
       turn, ``user_speech_s`` of speech (a 220 Hz tone), ``UserStoppedSpeakingFrame``;
    3. ``response_gap_s`` of silence while the bot thinks;
    4. ``BotStartedSpeakingFrame``, ``bot_speech_s`` of TTS audio (a 440 Hz tone) in 40 ms
       chunks, each passed on after the time it takes to play (as the output transport does),
       then ``BotStoppedSpeakingFrame``. The microphone keeps streaming silence meanwhile.

    Microphone frames are 20 ms, and ``SleepFrame`` pauses pace everything in real time, so the
    script takes about as long as the exchange. In a processor with its own input queue
    (``enable_direct_mode=False``) the pacing also keeps the order: speaking frames are system
    frames, which overtake queued audio; sent all at once, the bot's ``BotStoppedSpeakingFrame``
    would arrive before its audio, and the audio would only be counted in
    ``stats.ignored_bot_audio_ms``.

    With the default ``preroll_s`` (1 s) the processor then records a user segment of
    ``min(lead_silence_s, preroll_s) + user_speech_s`` and a bot segment of ``bot_speech_s``,
    not interrupted.

    Args:
        user_speech_s: How long the caller speaks.
        bot_speech_s: How long the bot's answer plays.
        lead_silence_s: Microphone audio before the caller starts.
        response_gap_s: Silence between the caller's turn and the bot's answer.
        user_sample_rate: Sample rate of the microphone.
        bot_sample_rate: Sample rate of the bot's audio.
    """
    frames: list[Frame] = []

    def microphone(seconds: float, frequency_hz: float) -> None:
        for audio in _chunks(seconds, user_sample_rate, MIC_FRAME_S, frequency_hz):
            frames.append(InputAudioRawFrame(audio, user_sample_rate, 1))
            frames.append(SleepFrame(MIC_FRAME_S))

    microphone(lead_silence_s, 0.0)
    frames += [UserStartedSpeakingFrame(), InterruptionFrame()]
    microphone(user_speech_s, USER_TONE_HZ)
    frames.append(UserStoppedSpeakingFrame())
    microphone(response_gap_s, 0.0)

    frames.append(BotStartedSpeakingFrame())
    quiet = tone(MIC_FRAME_S, user_sample_rate, 0.0)
    mic_per_chunk = round(SPEAKER_CHUNK_S / MIC_FRAME_S)
    for chunk in _chunks(bot_speech_s, bot_sample_rate, SPEAKER_CHUNK_S, BOT_TONE_HZ):
        frames.append(SleepFrame(SPEAKER_CHUNK_S))
        frames += [InputAudioRawFrame(quiet, user_sample_rate, 1) for _ in range(mic_per_chunk)]
        frames.append(TTSAudioRawFrame(chunk, bot_sample_rate, 1))
    frames += [SleepFrame(SPEAKER_CHUNK_S), BotStoppedSpeakingFrame()]
    return frames


def _chunks(seconds: float, sample_rate: int, chunk_s: float, frequency_hz: float) -> list[bytes]:
    """Return ``seconds`` of one continuous tone in chunks of ``chunk_s``.

    The last chunk is shorter if the length is not a whole number of chunks.
    """
    audio = tone(seconds, sample_rate, frequency_hz)
    chunk_bytes = round(chunk_s * sample_rate) * 2
    return [audio[start : start + chunk_bytes] for start in range(0, len(audio), chunk_bytes)]
