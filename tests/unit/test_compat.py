"""compat.py: a policy for every plugin name qpsmtpd 0.94 ships, and docs/migrating.md showing the same table."""

from __future__ import annotations

from pathlib import Path

import pytest

from qpsmtpd_stdio import compat

REPO = Path(__file__).resolve().parents[2]


def shipped(name: str) -> bool:
    return (REPO / "plugins" / f"{name}.py").is_file()


def test_every_qpsmtpd_name_is_shipped_or_has_exactly_one_policy():
    assert len(compat.QPSMTPD_PLUGINS) == len(set(compat.QPSMTPD_PLUGINS)) == 91
    for name in compat.QPSMTPD_PLUGINS:
        assert shipped(name) != (name in compat.POLICY), name


def test_aliases_run_plugins_we_ship_and_reasons_are_given():
    for name, (kind, detail) in compat.POLICY.items():
        assert kind in (compat.ALIAS, compat.CORE, compat.SKIPPED, compat.REFUSED) and detail, name
        if kind == compat.ALIAS:
            assert shipped(detail.split()[0]), name
    assert all(shipped(name) for name in compat.DIFFERENCES)


def test_docs_show_the_table():
    text = (REPO / "docs" / "migrating.md").read_text()
    shown = text.split("<!-- table: begin -->\n")[1].split("<!-- table: end -->")[0]
    assert shown == compat.table(shipped)


@pytest.mark.parametrize("name, expected", [
    ("badmailfrom:1", ("badmailfrom", ":1")),
    ("queue/maildir:12", ("queue/maildir", ":12")),
    ("badmailfrom", ("badmailfrom", "")),
    ("odd:name", ("odd:name", "")),
    (":1", (":1", "")),
    ("x:\u0661", ("x:\u0661", "")),  # an Arabic-Indic digit is not an instance number
])
def test_split_instance(name, expected):
    assert compat.split_instance(name) == expected
