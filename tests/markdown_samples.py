"""The fenced code samples of the README and the docs pages, for the tests that run them.

A sample may carry an instruction for ``tests/test_newcomer.py`` in an HTML comment on the line
just above its fence (invisible on GitHub, PyPI and the docs site)::

    <!-- newcomer: append mysite/settings.py -->

``run`` (the block's commands, in bash), ``append PATH`` or ``write PATH`` (PATH relative to the
directory of ``manage.py``); anything after a comma is a note for the reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(
    r"^(?:<!-- newcomer: (?P<marker>[^,>]+?)(?:,[^>]*)? -->\n)?"
    r"(?P<indent> *)```(?P<language>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$",
    flags=re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Sample:
    page: str  # relative to the checkout: "README.md", "docs/testing.md"
    language: str  # the fence's info string ("" for none)
    body: str  # de-indented (a sample may sit in a list item)
    marker: str | None  # the newcomer instruction, if any

    @property
    def action(self) -> str:
        return (self.marker or "").split(" ", 1)[0]

    @property
    def target(self) -> str:
        return (self.marker or "").split(" ", 1)[1]


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def samples(page: Path) -> list[Sample]:
    text = page.read_text()
    return [
        Sample(
            page=page.relative_to(ROOT).as_posix(),
            language=match["language"],
            body=re.sub(rf"^{match['indent']}", "", match["body"], flags=re.MULTILINE),
            marker=match["marker"],
        )
        for match in _FENCE.finditer(text)
    ]


def sample(page: Path, language: str, containing: str) -> Sample:
    """The one sample of ``page`` in ``language`` that contains ``containing``."""
    found = [each for each in samples(page) if each.language == language and containing in each.body]
    assert len(found) == 1, f"expected one {language} sample containing {containing!r} in {page.name}"
    return found[0]


def slug(heading: str) -> str:
    """The anchor MkDocs (and GitHub) give a heading: lowercase words joined by hyphens."""
    words = re.sub(r"[^\w\s-]", "", heading.lower()).split()
    return "-".join(words)


def anchors(page: Path) -> set[str]:
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)}
