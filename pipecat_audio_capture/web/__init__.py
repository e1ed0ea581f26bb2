"""Call review in the browser: the recorded calls, a picture of each, and every turn's audio.

``pipecat-audio-capture serve`` runs it (:func:`serve`); :func:`create_app` builds the aiohttp
application for an index of your own. Needs nothing beyond Pipecat's own aiohttp: the pages are
rendered on the server, with one small stylesheet and script.
"""

from pipecat_audio_capture.web.app import create_app
from pipecat_audio_capture.web.server import Listener, ServeOptions, listening, serve

__all__ = ["Listener", "ServeOptions", "create_app", "listening", "serve"]
