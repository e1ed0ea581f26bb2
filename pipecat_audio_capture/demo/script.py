"""The simulated call's script: what the caller says, what the bot answers, and when.

Every line has a prerecorded WAV in ``assets/`` (rendered by ``scripts/render_demo_assets.py``),
named after its text, so a script built from the same lines (fewer exchanges, no barge-in, an
earlier hang-up) needs no new recordings.
"""

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from pipecat_audio_capture.errors import WavFileError
from pipecat_audio_capture.wav import read_wav

USER_SAMPLE_RATE = 16000
"""The caller's microphone: 16 kHz, what Silero VAD and smart-turn expect."""

BOT_SAMPLE_RATE = 24000
"""The bot's voice: 24 kHz, Pipecat's default output rate."""

_ASSETS_PACKAGE = "pipecat_audio_capture.demo"
_ASSETS_DIR = "assets"


@dataclass(frozen=True)
class BotLine:
    """One answer of the bot.

    Pipecat's TTS synthesizes sentence by sentence, so each sentence has its own recording and the
    answer's transcript grows sentence by sentence as it is played.

    Parameters:
        sentences: The answer, one sentence per item, each ending in punctuation Pipecat's sentence
            splitter recognises.
    """

    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        """The whole answer as the LLM streams it."""
        return " ".join(self.sentences)


@dataclass(frozen=True)
class UserLine:
    """One utterance of the caller.

    Parameters:
        text: What the caller says; also what the scripted STT returns. Keep it free of commas and
            full stops inside: a pause longer than the VAD's ``stop_secs`` would split it into two
            segments, and the STT maps one segment to one utterance.
        pause_s: Silence between the end of the bot's previous line and this utterance.
        barge_in_s: If set, the caller does not wait for the bot to finish but starts this many
            seconds after the bot's previous line started playing, cutting it short.
    """

    text: str
    pause_s: float = 0.8
    barge_in_s: float | None = None


@dataclass(frozen=True)
class Exchange:
    """The caller says something, the bot answers.

    Parameters:
        user: What the caller says.
        bot: The bot's answer.
    """

    user: UserLine
    bot: BotLine


@dataclass(frozen=True)
class CallScript:
    """A whole call: the bot greets, then the exchanges follow in order.

    Parameters:
        greeting: What the bot says first (sent as ``TTSSpeakFrame`` when the call starts).
        exchanges: The exchanges, in order.
        hangup_after_s: When the call ends (an ``EndFrame`` is queued): this many seconds after the
            bot's last answer started playing, while it may still be playing; None ends it
            ``tail_s`` after that answer finished.
        tail_s: Silence between the bot's last answer and the hang-up when ``hangup_after_s`` is
            None.
    """

    greeting: BotLine
    exchanges: tuple[Exchange, ...]
    hangup_after_s: float | None = None
    tail_s: float = 0.5

    @property
    def bot_lines(self) -> tuple[BotLine, ...]:
        """The greeting followed by the answers, in the order the bot speaks them."""
        return (self.greeting, *(exchange.bot for exchange in self.exchanges))

    @property
    def user_lines(self) -> tuple[UserLine, ...]:
        """The caller's utterances, in order."""
        return tuple(exchange.user for exchange in self.exchanges)


def asset_name(speaker: str, text: str) -> str:
    """Return the file name of the recording of ``text`` spoken by ``speaker``.

    The name is derived from the text so that recordings are shared by every script that uses the
    line; the hash keeps two texts with the same leading words apart.

    Args:
        speaker: ``"user"`` or ``"bot"``.
        text: The line (for the bot, one sentence).
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = "-".join(words)[:40].rstrip("-")
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{speaker}-{slug}-{digest}.wav"


def _read_asset(name: str, sample_rate: int) -> bytes:
    """Return the 16-bit mono PCM of a bundled recording, checking its format."""
    path = resources.files(_ASSETS_PACKAGE).joinpath(_ASSETS_DIR, name)
    wav = read_wav(path.read_bytes())
    if (wav.sample_rate, wav.num_channels) != (sample_rate, 1):
        raise WavFileError(
            f"{name}: expected {sample_rate} Hz mono, got {wav.sample_rate} Hz, "
            f"{wav.num_channels} channels"
        )
    return wav.pcm


def load_user_audio(script: CallScript) -> list[bytes]:
    """Return the recording of each of the caller's utterances, in order (16 kHz PCM)."""
    return [
        _read_asset(asset_name("user", line.text), USER_SAMPLE_RATE) for line in script.user_lines
    ]


def load_bot_audio(script: CallScript) -> dict[str, bytes]:
    """Return the recording of every sentence the bot may say, by sentence (24 kHz PCM)."""
    return {
        sentence: _read_asset(asset_name("bot", sentence), BOT_SAMPLE_RATE)
        for line in script.bot_lines
        for sentence in line.sentences
    }


DEFAULT_SCRIPT = CallScript(
    greeting=BotLine(("Hello and thanks for calling Acme support.", "How can I help you today?")),
    exchanges=(
        Exchange(
            user=UserLine("Hi I would like to check on my order"),
            bot=BotLine(("Sure.", "What is your order number?")),
        ),
        Exchange(
            user=UserLine("It is four two seven one"),
            # Long enough (over 5 s) that the barge-in below cuts most of it; the short first
            # sentence is played in full before the cut, so the interrupted transcript is not
            # empty.
            bot=BotLine(
                (
                    "Thank you.",
                    "Order four two seven one left our warehouse in Denver yesterday afternoon.",
                    "It is travelling by ground freight and should arrive on Thursday.",
                    "You will get a text message with the tracking link once it is scanned.",
                )
            ),
        ),
        Exchange(
            # Pipecat's VAD confirms speech about 0.33 s after it starts, so the barge-in the
            # pipeline sees lands about 1.65 s into the answer.
            user=UserLine("Sorry can I change the delivery address", barge_in_s=1.3),
            bot=BotLine(("Yes.", "I have sent you a link where you can update the address.")),
        ),
        Exchange(
            user=UserLine("Perfect thank you goodbye"),
            bot=BotLine(("You are welcome.", "Goodbye!")),
        ),
    ),
)
"""A support call: greeting, four exchanges, a barge-in about 1.5 s into the longest answer."""
