"""docs/porting.md shows the three ports as they are in plugins/: each Python block is in its plugin's file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PERL = Path("/usr/share/qpsmtpd/plugins")


def blocks(language: str) -> list[str]:
    text = (REPO / "docs" / "porting.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.mark.parametrize("name, index", [("noop_counter", 0), ("bogus_bounce", 1), ("quit_fortune", 2)])
def test_python_blocks_are_the_shipped_code(name, index):
    source = (REPO / "plugins" / f"{name}.py").read_text()
    for chunk in blocks("python")[index].split("\n\n\n"):
        kept = [line for line in chunk.strip().splitlines()]
        assert all(line in source for line in kept), (name, [line for line in kept if line not in source])


@pytest.mark.skipif(not PERL.is_dir(), reason="Debian's qpsmtpd package is not installed")
@pytest.mark.parametrize("name, index", [("noop_counter", 0), ("bogus_bounce", 1), ("quit_fortune", 2)])
def test_perl_blocks_come_from_debians_plugins(name, index):
    """Abridged (log lines and comments out, lines joined), but every line of a block is the original's code."""
    text = re.sub(r"(?m)(?<![$\\])#[^\n]*$", "", (PERL / name).read_text())  # comments, not $#list or \#
    text = re.sub(r"\$(self|_\[0\])->log\((?:[^;]|\n)*?\);", "", text)  # log lines, as the doc leaves them out
    original = re.sub(r"\s+", "", text)
    for line in blocks("perl")[index].splitlines():
        assert re.sub(r"\s+", "", line) in original, (name, line)
