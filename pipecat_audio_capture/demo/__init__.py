"""A simulated voice-bot call, fully offline, built from real Pipecat components.

Used by the end-to-end tests, the offline demo and the benchmarks::

    result = await run_simulated_call(speed=2.0, recorder_processors=[my_recorder])
    result.of(EventKind.ASSISTANT_TURN_STOPPED)
"""

from pipecat_audio_capture.demo.call import (
    BotPlayback,
    CallEvent,
    CallResult,
    EventKind,
    SimulatedCall,
    build_call_pipeline,
    run_simulated_call,
)
from pipecat_audio_capture.demo.script import (
    DEFAULT_SCRIPT,
    BotLine,
    CallScript,
    Exchange,
    UserLine,
)
from pipecat_audio_capture.demo.services import SpokenUtterance

__all__ = [
    "DEFAULT_SCRIPT",
    "BotLine",
    "BotPlayback",
    "CallEvent",
    "CallResult",
    "CallScript",
    "EventKind",
    "Exchange",
    "SimulatedCall",
    "SpokenUtterance",
    "UserLine",
    "build_call_pipeline",
    "run_simulated_call",
]
