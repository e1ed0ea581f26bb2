"""Building HTML and inline SVG so that data is always escaped.

Pages are built from :func:`element` calls, never by formatting strings: a plain ``str`` child or
attribute value is escaped with :func:`html.escape` on the way in, and only :class:`Html` (what
:func:`element`, :func:`fragment` and :func:`escape` return) is trusted as markup. Text from the
index (transcripts, URLs, ids) therefore cannot open a tag or leave an attribute, whether it ends
up in a paragraph, an SVG ``<title>`` or an attribute value.
"""

import html
import re
from collections.abc import Mapping

from pipecat_audio_capture.errors import InvalidArgumentError

_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9:-]*")
_VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})

Attribute = str | int | float | bool | None
"""An attribute value: None and False leave the attribute out, True writes it bare."""


class Html(str):
    """Markup that is safe to emit as is: escaped text or elements built here."""


def escape(value: object) -> Html:
    """Return ``value`` as text, with ``&``, ``<``, ``>`` and both quote characters escaped."""
    return Html(html.escape(str(value), quote=True))


def fragment(*children: str) -> Html:
    """Return children one after the other; plain strings are escaped, :class:`Html` is kept."""
    return Html("".join(child if isinstance(child, Html) else escape(child) for child in children))


def element(name: str, attrs: Mapping[str, Attribute] | None = None, *children: str) -> Html:
    """Return one element with escaped attribute values and children.

    Args:
        name: The tag name, a constant of the caller's.
        attrs: Attribute names (constants) and values (any data: escaped).
        *children: Its content; plain strings are escaped, :class:`Html` is kept.

    Raises:
        InvalidArgumentError: If a tag or attribute name is not a plain name, or a void element
            (``meta``, ``link``...) is given children.
    """
    rendered = [_check_name(name)]
    for key, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        _check_name(key)
        rendered.append(key if value is True else f'{key}="{escape(value)}"')
    opening = f"<{' '.join(rendered)}>"
    if name in _VOID:
        if children:
            raise InvalidArgumentError(f"<{name}> cannot have children")
        return Html(opening)
    return Html(f"{opening}{fragment(*children)}</{name}>")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidArgumentError(f"not a tag or attribute name: {name!r}")
    return name
