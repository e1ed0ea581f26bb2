"""WAV encoding: a 44-byte RIFF header built with numpy in front of the PCM bytes."""

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, TypeGuard, cast

import numpy as np

from pipecat_audio_capture.errors import AudioFormatError, WavFileError
from pipecat_audio_capture.limits import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    format_supported,
)
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


def check_format(sample_rate: object, num_channels: object) -> None:
    """Refuse a format the package does not record.

    Every layer accepts the formats of :mod:`~pipecat_audio_capture.limits`, so the WAV header,
    the index and the spool meet nothing one of them would refuse; anything else, whatever its
    type or size, is refused here before any arithmetic on it.

    Args:
        sample_rate: Sample rate in Hz.
        num_channels: Number of interleaved channels.

    Raises:
        AudioFormatError: If either is not an integer within the limits.
    """
    integers = _is_int(sample_rate) and _is_int(num_channels)
    if integers and format_supported(cast(int, sample_rate), cast(int, num_channels)):
        return
    raise AudioFormatError(
        f"{_shown(sample_rate)} Hz, {_shown(num_channels)} channels: only "
        f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz and 1-{MAX_CHANNELS} channels are recorded"
    )


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int in Python, but True is not a sample rate.
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """The value for a message, short whatever it is (Python refuses to print huge ints)."""
    if _is_int(value) and abs(value).bit_length() <= 64:
        return str(value)
    return f"<{type(value).__name__}>"


def wav_header(data_size: int, sample_rate: int, num_channels: int) -> bytes:
    """Return the 44-byte header of a 16-bit PCM WAV file.

    Args:
        data_size: Bytes of PCM that follow the header.
        sample_rate: Sample rate in Hz.
        num_channels: Number of interleaved channels.

    Raises:
        AudioFormatError: If the format is not one the package records, or the size does not
            fit a WAV file.
    """
    check_format(sample_rate, num_channels)
    block_align = SAMPLE_WIDTH_BYTES * num_channels
    if not _is_int(data_size) or data_size < 0:
        raise AudioFormatError(f"{_shown(data_size)} is not a size in bytes")
    if data_size % block_align:
        raise AudioFormatError(
            f"{data_size} bytes is not a whole number of {block_align}-byte frames"
        )
    if data_size > _MAX_DATA_BYTES:
        raise AudioFormatError(f"{data_size} bytes of PCM exceed the 4 GiB limit of a WAV file")
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
    check_format(sample_rate, num_channels)
    block_align = SAMPLE_WIDTH_BYTES * num_channels
    if not _is_int(data_size) or data_size % block_align or not 0 <= data_size <= _MAX_DATA_BYTES:
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
        AudioFormatError: If the format is not one the package records, the size cannot be a
            WAV file's, or ``data_size`` is not the size of ``pcm``.
    """
    chunks = pcm if isinstance(pcm, list) else list(pcm)
    if data_size is None:
        data_size = sum(map(len, chunks))
    # One join writes header and audio into the file's bytes: the audio is copied once.
    wav = b"".join([_sized_header(data_size, sample_rate, num_channels), *chunks])
    if len(wav) != HEADER_BYTES + data_size:
        raise AudioFormatError(
            f"data_size is {_shown(data_size)} but the PCM holds {len(wav) - HEADER_BYTES}"
        )
    return wav


@dataclass(frozen=True)
class WavAudio:
    """The format and PCM bytes of a canonical 16-bit PCM WAV file."""

    sample_rate: int
    num_channels: int
    pcm: bytes


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says about the PCM after it.

    Parameters:
        sample_rate: Sample rate in Hz.
        num_channels: Number of interleaved channels.
        data_size: Bytes of PCM the header announces (the file may hold fewer).
    """

    sample_rate: int
    num_channels: int
    data_size: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (one sample of every channel)."""
        return SAMPLE_WIDTH_BYTES * self.num_channels

    @property
    def num_frames(self) -> int:
        """Frames the header announces."""
        return self.data_size // self.frame_bytes


def read_wav_header(file: BinaryIO) -> WavFormat:
    """Read the 44-byte header :func:`encode_wav` writes, leaving ``file`` at the first sample.

    Raises:
        WavFileError: If the header is not a 16-bit PCM header of that form, or its format is
            outside the package's limits.
    """
    raw = file.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise WavFileError("too short to be a WAV file")
    header = np.frombuffer(raw, dtype=_HEADER_DTYPE)[0]
    if header["riff"] != b"RIFF" or header["wave"] != b"WAVE" or header["data"] != b"data":
        raise WavFileError("not a canonical PCM WAV file")
    sample_rate = int(header["sample_rate"])
    num_channels = int(header["num_channels"])
    pcm16 = (
        int(header["fmt_size"]) == 16
        and int(header["audio_format"]) == _PCM_FORMAT
        and int(header["bits_per_sample"]) == SAMPLE_WIDTH_BYTES * 8
        and int(header["block_align"]) == SAMPLE_WIDTH_BYTES * num_channels
    )
    if not pcm16:
        raise WavFileError("not a 16-bit PCM WAV file")
    if not format_supported(sample_rate, num_channels):
        raise WavFileError(f"unsupported format: {sample_rate} Hz, {num_channels} channels")
    return WavFormat(sample_rate, num_channels, int(header["data_size"]))


def read_wav(wav: bytes) -> WavAudio:
    """Parse a canonical 16-bit PCM WAV file (a 44-byte header, as :func:`encode_wav` writes).

    Raises:
        WavFileError: If ``wav`` is not such a file, its format is outside the package's limits, or
            its data size disagrees with its length.
    """
    header = read_wav_header(io.BytesIO(wav[:HEADER_BYTES]))
    pcm = wav[HEADER_BYTES:]
    if header.data_size != len(pcm) or len(pcm) % header.frame_bytes:
        raise WavFileError(f"data size {header.data_size} but {len(pcm)} bytes follow")
    return WavAudio(sample_rate=header.sample_rate, num_channels=header.num_channels, pcm=pcm)


def pcm_of_wav(wav: bytes) -> np.ndarray:
    """Return the samples of a WAV file written by :func:`encode_wav` as int16 (frames x channels).

    Raises:
        WavFileError: If ``wav`` is not a canonical 16-bit PCM WAV file.
    """
    audio = read_wav(wav)
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    return samples.reshape(-1, audio.num_channels)
