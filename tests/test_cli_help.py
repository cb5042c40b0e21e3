"""The `sqe` help texts say each default once and agree with the README's command-line section."""

import os
import re
import shlex

import pytest

from speechbrain_sqe import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _help(command):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    return " ".join(sub.format_help().split())


def _readme_section(title):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        text = stream.read()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("command", ["evaluate", "score", "enhance", "analyze-ssl"])
def test_each_default_is_shown_once(command):
    text = _help(command)
    assert "(default: None)" not in text and "(default: False)" not in text
    for option in re.findall(r"(--[a-z-]+) [A-Z]", text):
        item = text.split(option, 2)[-1].split(" --", 1)[0]
        assert item.count("(default") <= 1, (command, option, item)


def test_readme_command_lines_parse():
    """Every `sqe ...` line of the README's command-line section is accepted by the parser."""
    section = _readme_section("Command line: `sqe`")
    lines = [line.split("#")[0].strip() for line in section.splitlines() if line.startswith("sqe ")]
    assert len(lines) >= 8
    parser = cli.build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        assert args.func is not None, line


def test_readme_states_the_defaults_the_help_shows():
    section = " ".join(_readme_section("Command line: `sqe`").split())
    assert "(default: 1)" in _help("evaluate") and "`--jobs N` worker processes (default 1" in section
    assert "ssl_robustness/ in the current folder" in _help("analyze-ssl") and "`ssl_robustness/` in the current folder" in section
