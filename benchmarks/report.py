"""One line of the results table, and the table itself."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    """A figure, its target, the two measured values, and whether the target was met.

    ``met`` is ``None`` for figures that are only reported (times, throughput), or skipped.
    """

    figure: str
    target: str
    app: str
    handrolled: str
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "—"}[met]


def render(rows: list[Row]) -> str:
    """A Markdown table, then the notes of every row, each marked with its row's number."""
    header = ["#", "figure", "target", "django-cloudsync", "hand-rolled", "met"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for number, row in enumerate(rows, start=1):
        cells = [str(number), row.figure, row.target, row.app, row.handrolled, _verdict(row.met)]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    notes = [(number, note) for number, row in enumerate(rows, start=1) for note in row.notes]
    if notes:
        lines.append("")
        lines.extend(f"- ({number}) {note}" for number, note in notes)
    return "\n".join(lines)
