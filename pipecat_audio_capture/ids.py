"""Validation of the ids that reach paths, object keys and SQL rows."""

import re
import uuid

from pipecat_audio_capture.errors import InvalidIdError

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""The form ``str(uuid.UUID(...))`` gives, which the package writes.

Checked without parsing: three ids per index row, where parsing was a tenth of a batched row's
cost.
"""


def require_uuid(value: str, what: str = "id") -> str:
    """Return ``value`` in canonical UUID form, or raise.

    Args:
        value: The id to check.
        what: What the id is, for the error message.

    Returns:
        The canonical lower-case hyphenated form of the UUID.

    Raises:
        InvalidIdError: If ``value`` is not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a UUID string, got {type(value).__name__}")
    if _CANONICAL.fullmatch(value):
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise InvalidIdError(f"{what} is not a UUID: {value!r}") from exc
    canonical = str(parsed)
    # uuid.UUID also accepts braces, "urn:uuid:" and bare hex; only the canonical form may reach
    # a path, so anything else is refused rather than silently rewritten.
    if value.lower() != canonical:
        raise InvalidIdError(f"{what} is not a canonical UUID: {value!r}")
    return canonical


def new_id() -> str:
    """Return a new random UUID (version 4) as a string."""
    return str(uuid.uuid4())
