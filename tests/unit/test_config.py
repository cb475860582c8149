"""Config: finding files (the config dir, then /var/qmail/control), $include, and the cases around them."""

import os

import pytest

from qpsmtpd_stdio.config import Config, ConfigError


@pytest.fixture
def dirs(tmp_path):
    main, control = tmp_path / "config", tmp_path / "control"
    main.mkdir()
    control.mkdir()
    return main, control


def test_the_config_dir_first_then_the_fallback(dirs):
    main, control = dirs
    (main / "me").write_text("mx.example\n")
    (control / "me").write_text("other.example\n")
    (control / "rcpthosts").write_text("# comment\nexample.org\n\n")
    config = Config(str(main), str(control))
    assert config.get("me") == ["mx.example"]
    assert config.get("rcpthosts") == ["example.org"]
    assert config.get("absent") == [] and config.path("absent") is None


def test_subpaths_and_a_missing_fallback(dirs, tmp_path):
    main, _ = dirs
    (main / "dkim" / "example.org").mkdir(parents=True)
    (main / "dkim" / "example.org" / "selector").write_text("sel\n")
    config = Config(str(main), str(tmp_path / "no-such-dir"))
    assert config.get("dkim/example.org/selector") == ["sel"]
    assert config.get("dkim/example.net/selector") == []


def test_a_broken_symlink_is_absent(dirs):
    main, control = dirs
    (main / "badhelo").symlink_to(main / "nowhere")
    (control / "badhelo").write_text("from-control\n")
    assert Config(str(main), str(control)).get("badhelo") == ["from-control"]


def test_a_dir_that_cannot_be_listed_is_asked_name_by_name(dirs, monkeypatch):
    main, control = dirs
    (main / "me").write_text("mx.example\n")
    real = os.listdir

    def listdir(path):
        if str(path) == str(main):
            raise PermissionError(13, "Permission denied")  # mode 0711: searchable, not readable
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    config = Config(str(main), str(control))
    assert config.get("me") == ["mx.example"] and config.get("absent") == []


def test_include_files_dirs_and_loops(dirs):
    main, _ = dirs
    (main / "parts").mkdir()
    (main / "parts" / "b").write_text("two\n")
    (main / "parts" / "a").write_text("one\n")
    (main / "parts" / ".hidden").write_text("never\n")
    (main / "list").write_text("zero\n$include parts\n")
    (main / "loop").write_text("x\n$include loop2\n")
    (main / "loop2").write_text("$include loop\n")
    (main / "linked").symlink_to(main / "loop")
    config = Config(str(main), None)
    assert config.get("list") == ["zero", "one", "two"]
    with pytest.raises(ConfigError, match="include loop"):
        config.get("loop")
    problems = []
    assert [i for _, _, i in config.walk(str(main / "linked"), on_problem=lambda w, m: problems.append(m))] == ["x"]
    assert problems == [f"$include loop at {main / 'loop'}"]  # the same file reached through a symlink
    with pytest.raises(ConfigError, match="cannot read"):
        config.walk(str(main / "missing"))
