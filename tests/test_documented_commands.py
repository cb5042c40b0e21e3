"""Every ``train.py hparams/<recipe>.yaml ...`` command the documentation shows, and every override a
recipe's comments suggest, parses as ``train.py`` parses it and merges into that recipe's YAML; every
``sqe ...`` command it shows is accepted by the ``sqe`` parser.

The commands are read from the README files, the results pages (docs/results/), the model cards and the recipes' own comments; each is
split like a shell line (quotes, continuation lines, trailing comments), SpeechBrain's
``parse_arguments`` separates its run flags from the overrides exactly as ``train.py`` does, and the
overrides are merged into the YAML with HyperPyYAML, keys required to exist (nothing is built). A
mistyped key, an override whose structure the YAML cannot take (a mapping over a ``null``), or a
value that is not YAML fails here instead of in the user's shell.
"""

import glob
import os
import re
import shlex

import pytest
import speechbrain as sb
from hyperpyyaml import resolve_references
from recipe_args import ROOT

import train

COMMAND = re.compile(r"train\.py\s+(hparams/[\w.-]+\.yaml)(?=\s|$)(.*)")
#: ``sqe <command> ...`` or ``-m speechbrain_sqe.cli <command> ...`` (torchrun).
CLI_COMMAND = re.compile(r"(?:(?<![\w./(-])sqe|-m speechbrain_sqe\.cli)\s+(evaluate|score|enhance|analyze-ssl)(?=\s|$)(.*)")
#: Shell words after which the rest of a line is not the command's arguments.
STOP_WORDS = {"|", "||", "&&", ";", "&", ">", ">>", "2>&1"}


def _documents():
    paths = [os.path.join(ROOT, "README.md")]
    paths += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "recipes", "**", "*.md"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "speechbrain_sqe", "pretrained", "*", "README.md"))
    return sorted(paths)


def _joined_lines(text, comment_prefix=False):
    """Lines with shell continuations (a trailing backslash) joined; YAML comment marks removed."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if comment_prefix:
            if not line.startswith("#"):
                if current:
                    lines.append(current)
                    current = ""
                continue
            line = line.lstrip("#").strip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    if current:
        lines.append(current)
    return lines


def _arguments(rest):
    """The shell words of a command's tail, up to a pipe, redirection or trailing comment."""
    rest = rest.split("`")[0]  # a command quoted inline in prose ends at its closing backtick
    words = []
    for word in shlex.split(rest, comments=True):
        if word in STOP_WORDS or word.startswith((">", "2>")):
            break
        words.append(word)
    return words


def _usable(word):
    # Shell variables ($R) and placeholders (<folder>, ...) stand for text the reader fills in.
    return not any(mark in word for mark in ("$", "<", ">", "...", "…"))


def documented_commands():
    """``(where, recipe YAML, argument words)`` of every documented train.py command and YAML hint."""
    found = []
    for path in _documents():
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        for line in _joined_lines(text):
            for match in COMMAND.finditer(line):
                found.append((os.path.relpath(path, ROOT), match.group(1), _arguments(match.group(2))))
    for path in sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml"))):
        recipe = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        for line in _joined_lines(text, comment_prefix=True):
            line = line.lstrip("#").strip()
            match = COMMAND.search(line)
            if match:
                found.append((recipe, match.group(1), _arguments(match.group(2))))
            elif line.startswith("--") and re.match(r"--\w+=", line):
                # a hint such as "--condition_weights="{noise: 1}" --snr_range=[-5,20]" (this recipe's)
                words = [w for w in _arguments(line) if w.startswith("--") and "=" in w]
                found.append((recipe, recipe, words))
    return found


COMMANDS = documented_commands()


def documented_cli_commands():
    """``(where, argument words)`` of every ``sqe`` command in a fenced code block of the documentation
    (prose names commands in part, "`sqe score` prints..."; lines with shell variables are left out)."""
    found = []
    for path in _documents():
        with open(path, encoding="utf-8") as stream:
            blocks = stream.read().split("```")[1::2]
        for line in _joined_lines("\n".join(blocks)):
            if line.startswith("#"):  # a comment in a block mentions commands in prose
                continue
            for match in CLI_COMMAND.finditer(line):
                words = _arguments(match.group(2))
                if not any("$" in word for word in words):
                    found.append((os.path.relpath(path, ROOT), [match.group(1)] + words))
    return found


CLI_COMMANDS = documented_cli_commands()


def test_the_documentation_shows_commands_of_every_recipe():
    recipes = {recipe for _, recipe, _ in COMMANDS}
    shipped = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "hparams", "*.yaml"))}
    assert shipped <= recipes, f"no documented command for {sorted(shipped - recipes)}"
    assert len(COMMANDS) > 50


def _check(recipe, words):
    words = [w for w in words if _usable(w) and w not in train.FLAGS]
    path = os.path.join(ROOT, recipe)
    _, _, overrides = sb.parse_arguments([path] + words)
    with open(path, encoding="utf-8") as stream:
        resolve_references(stream, overrides, overrides_must_match=True)


@pytest.mark.parametrize("where, recipe, words", COMMANDS,
                         ids=[f"{where}:{recipe}:{index}" for index, (where, recipe, _) in enumerate(COMMANDS)])
def test_documented_overrides_merge_into_their_recipe(where, recipe, words):
    assert os.path.isfile(os.path.join(ROOT, recipe)), f"{where} names {recipe}, which does not exist"
    try:
        _check(recipe, words)
    except Exception as error:  # noqa: BLE001 - any failure is the documentation's
        pytest.fail(f"{where}: train.py {recipe} {' '.join(words)}\n-> {type(error).__name__}: {error}")


def test_the_check_fails_on_a_mistyped_key_and_a_mapping_over_null(tmp_path):
    with pytest.raises(KeyError, match="number_of_epoch"):
        _check("hparams/bsse.yaml", ["--number_of_epoch=3"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("weights: null\n")
    with pytest.raises(ValueError, match="structure of the overrides"):
        _check(str(recipe), ["--weights={a: 1}"])
    _check("hparams/sqa.yaml", ["--condition_weights={noise: 1, room_noise: 1}", "--snr_range=[-5,20]"])


def test_the_documentation_shows_every_sqe_command():
    assert {words[0] for _, words in CLI_COMMANDS} == {"evaluate", "score", "enhance", "analyze-ssl"}
    assert len(CLI_COMMANDS) > 20


@pytest.mark.parametrize("where, words", CLI_COMMANDS,
                         ids=[f"{where}:{words[0]}:{index}" for index, (where, words) in enumerate(CLI_COMMANDS)])
def test_documented_sqe_commands_parse(where, words):
    from speechbrain_sqe import cli

    try:
        args = cli.build_parser().parse_args(words)
    except SystemExit:
        pytest.fail(f"{where}: sqe {' '.join(words)} is refused by the parser")
    assert args.func is not None
