"""WAV encoding: a 44-byte RIFF header built with numpy in front of the PCM bytes."""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipecat_audio_capture.records import SAMPLE_WIDTH_BYTES

_HEADER_DTYPE = np.dtype(
    [
        ("riff", "S4"),
        ("riff_size", "<u4"),
        ("wave", "S4"),
        ("fmt", "S4"),
        ("fmt_size", "<u4"),
        ("audio_format", "<u2"),
        ("num_channels", "<u2"),
        ("sample_rate", "<u4"),
        ("byte_rate", "<u4"),
        ("block_align", "<u2"),
        ("bits_per_sample", "<u2"),
        ("data", "S4"),
        ("data_size", "<u4"),
    ]
)
HEADER_BYTES = _HEADER_DTYPE.itemsize
_PCM_FORMAT = 1
_MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)


def wav_header(data_size: int, sample_rate: int, num_channels: int) -> bytes:
    """Return the 44-byte header of a 16-bit PCM WAV file.

    Args:
        data_size: Bytes of PCM that follow the header.
        sample_rate: Sample rate in Hz.
        num_channels: Number of interleaved channels.

    Raises:
        ValueError: If the sizes do not fit a WAV file.
    """
    block_align = SAMPLE_WIDTH_BYTES * num_channels
    if sample_rate <= 0 or num_channels <= 0:
        raise ValueError(f"invalid format: {sample_rate} Hz, {num_channels} channels")
    if data_size % block_align:
        raise ValueError(f"{data_size} bytes is not a whole number of {block_align}-byte frames")
    if data_size > _MAX_DATA_BYTES:
        raise ValueError(f"{data_size} bytes of PCM exceed the 4 GiB limit of a WAV file")
    header = np.array(
        (
            b"RIFF",
            HEADER_BYTES - 8 + data_size,
            b"WAVE",
            b"fmt ",
            16,
            _PCM_FORMAT,
            num_channels,
            sample_rate,
            sample_rate * block_align,
            block_align,
            SAMPLE_WIDTH_BYTES * 8,
            b"data",
            data_size,
        ),
        dtype=_HEADER_DTYPE,
    )
    return header.tobytes()


@lru_cache(maxsize=32)
def _header_template(sample_rate: int, num_channels: int) -> bytes:
    """The header of a format with both size fields zero, built once per format."""
    return wav_header(0, sample_rate, num_channels)


def _sized_header(data_size: int, sample_rate: int, num_channels: int) -> bytes:
    """``wav_header`` from the format's template: only the two size fields change."""
    block_align = SAMPLE_WIDTH_BYTES * num_channels
    if data_size % block_align or data_size > _MAX_DATA_BYTES or data_size < 0:
        # The full builder says which rule the size breaks.
        return wav_header(data_size, sample_rate, num_channels)
    template = _header_template(sample_rate, num_channels)
    return b"".join(
        (
            template[:4],
            (HEADER_BYTES - 8 + data_size).to_bytes(4, "little"),
            template[8:40],
            data_size.to_bytes(4, "little"),
        )
    )


def encode_wav(
    pcm: Iterable[bytes], sample_rate: int, num_channels: int, *, data_size: int | None = None
) -> bytes:
    """Encode 16-bit little-endian PCM chunks as one WAV file.

    Args:
        pcm: Chunks of interleaved 16-bit PCM.
        sample_rate: Sample rate in Hz.
        num_channels: Number of channels.
        data_size: Bytes in ``pcm`` if the caller counted them (the processor does as it
            gathers a segment); counted here otherwise, which for a long segment of small
            chunks costs more than copying them.

    Returns:
        The WAV file's bytes.

    Raises:
        ValueError: If the format or size cannot be a WAV file, or ``data_size`` is not the
            size of ``pcm``.
    """
    chunks = pcm if isinstance(pcm, list) else list(pcm)
    if data_size is None:
        data_size = sum(map(len, chunks))
    # One join writes header and audio into the file's bytes: the audio is copied once.
    wav = b"".join([_sized_header(data_size, sample_rate, num_channels), *chunks])
    if len(wav) != HEADER_BYTES + data_size:
        raise ValueError(f"data_size is {data_size} but the PCM holds {len(wav) - HEADER_BYTES}")
    return wav


@dataclass(frozen=True)
class WavAudio:
    """The format and PCM bytes of a canonical 16-bit PCM WAV file."""

    sample_rate: int
    num_channels: int
    pcm: bytes


def read_wav(wav: bytes) -> WavAudio:
    """Parse a canonical 16-bit PCM WAV file (a 44-byte header, as :func:`encode_wav` writes).

    Raises:
        ValueError: If ``wav`` is not such a file, or its data size disagrees with its length.
    """
    if len(wav) < HEADER_BYTES:
        raise ValueError("too short to be a WAV file")
    header = np.frombuffer(wav[:HEADER_BYTES], dtype=_HEADER_DTYPE)[0]
    if header["riff"] != b"RIFF" or header["wave"] != b"WAVE" or header["data"] != b"data":
        raise ValueError("not a canonical PCM WAV file")
    if header["audio_format"] != _PCM_FORMAT or header["bits_per_sample"] != 8 * SAMPLE_WIDTH_BYTES:
        raise ValueError("not 16-bit PCM")
    channels = int(header["num_channels"])
    sample_rate = int(header["sample_rate"])
    if channels < 1 or sample_rate < 1:
        raise ValueError(f"impossible format: {sample_rate} Hz, {channels} channels")
    pcm = wav[HEADER_BYTES:]
    if int(header["data_size"]) != len(pcm) or len(pcm) % (SAMPLE_WIDTH_BYTES * channels):
        raise ValueError(f"data size {int(header['data_size'])} but {len(pcm)} bytes follow")
    return WavAudio(sample_rate=sample_rate, num_channels=channels, pcm=pcm)


def pcm_of_wav(wav: bytes) -> np.ndarray:
    """Return the samples of a WAV file written by :func:`encode_wav` as int16 (frames x channels).

    Raises:
        ValueError: If ``wav`` is not a canonical 16-bit PCM WAV file.
    """
    audio = read_wav(wav)
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    return samples.reshape(-1, audio.num_channels)
