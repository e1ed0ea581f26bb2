"""Markdown pieces of ``RESULTS.md``."""

from collections.abc import Sequence
from dataclasses import dataclass, field


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One part of the results: a title, paragraphs and tables in order, and headline figures.

    Parameters:
        title: The section's heading.
        blocks: Markdown blocks (paragraphs, tables) in order.
        headlines: One-line figures repeated in the summary at the top of the file.
    """

    title: str
    blocks: list[str] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)

    def add(self, block: str) -> None:
        """Append a Markdown block."""
        self.blocks.append(block)

    def markdown(self) -> str:
        """The section as Markdown."""
        return "\n\n".join([f"## {self.title}", *self.blocks])


def skipped(title: str, reason: str) -> Section:
    """A section that did not run, saying why."""
    section = Section(title)
    section.add(f"skipped: {reason}")
    section.headlines.append(f"{title}: skipped ({reason})")
    return section
