"""The docs cannot drift from the CLI: every `videogan ...` command line that README.md and docs/ show is
parsed by the real argument parser (never run), and every config key they name (`train.r1_weight`, `--set
model.g_width=64`) exists in videogan.config. One failure lists every bad line, with its file and line.

What counts as a command line, and how it is read:
- In fenced code blocks (any language but Python, JSON, YAML, TOML, HTML and the like) each line, with `\\`
  continuations joined and `# comments` dropped; `$ ` prompts are removed. Outside code blocks, each inline
  code span (`...`, also one that wraps across lines).
- A shell line is split at `;`, `&&`, `||`, `|` and `&`; a part is a videogan command when its first word
  (after `VAR=value` assignments) is `videogan` (or a path ending in bin/videogan), or when `python ... -m
  videogan` / `torchrun ... -m videogan` runs it. Redirections (`> out.json`) are dropped. Anything else
  (`from videogan import ...`, `~/.cache/videogan`) is prose, a path or another program, and is skipped.
- Optional parts written `[--size 64]` lose their brackets. A placeholder (an all-capitals word: NAME, RUN,
  DIR, N; VIDEO_OR_FOLDER_OR_LIST.txt is a path and stays) becomes a sample value: the first choice of the
  option it follows where that option has choices, else "1" (valid for every count, number and path).
- `...` marks an elided command (`videogan train ... --eval-every 1000`, `videogan train --data ...`,
  `videogan generate RUN/checkpoints/step_...`): the options it shows must parse, its required arguments may
  be left out. After an option that takes a value, a lone `...` stands for that value (a sample value).
- A mention that names only commands (`videogan study`, `videogan bench train`) must name existing commands;
  its required arguments are not asked for.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import pkgutil
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import videogan.data
from videogan.cli import make_parser
from videogan.config import Config, ConfigError, override, parse_assignment

ROOT = Path(__file__).resolve().parents[1]
NOT_SHELL = {"python", "py", "pycon", "json", "jsonc", "yaml", "yml", "toml", "html", "xml", "ini", "cfg",
             "bibtex", "bib", "csv", "diff", "mermaid", "js", "javascript", "css", "lua", "c", "cpp", "make",
             "makefile"}
SEPARATORS = {";", "&&", "||", "|", "&", ";;"}
REDIRECTS = re.compile(r"^[0-9]*(>>?|<|>&|&>)$")
PLACEHOLDER = re.compile(r"^<[^>]+>$|^[A-Z][A-Z0-9_]*$")
SECTIONS = {f.name: {g.name for g in dataclasses.fields(getattr(Config(), f.name))}
            for f in dataclasses.fields(Config)}
# `model.json`, `data.prepare`: a file or a module of the package, not a config key.
FILE_SUFFIXES = {"json", "py", "txt", "md", "yaml", "yml", "toml", "safetensors", "npz", "npy", "csv", "html",
                 "gif", "png", "jpg", "jpeg", "mp4", "avi", "tar", "t7", "sqlite", "log", "pt", "pth", "zip"}
DATA_MODULES = {m.name for m in pkgutil.iter_modules(videogan.data.__path__)}
KEY = re.compile(r"(?<![\w.$/-])(" + "|".join(SECTIONS) + r")\.([A-Za-z_*][\w*]*)(?![\w(])(?!\.\w)")
SET_KEY = re.compile(r"--set[ =]+['\"]?((?:" + "|".join(SECTIONS) + r")\.[A-Za-z_*][\w*]*)")


@dataclass
class Snippet:
    """A piece of a doc that may hold commands: one logical line of a code block or one inline code span."""
    path: Path
    line: int
    text: str
    inline: bool
    language: str = ""


@dataclass
class Command:
    snippet: Snippet
    argv: list[str]
    elided: bool = False
    notes: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{_shown(self.snippet.path)}:{self.snippet.line}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def doc_files() -> list[Path]:
    # recipes/: the data recipes of the shipped models show commands too
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
            *sorted((ROOT / "recipes").rglob("*.md"))]


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def snippets(path: Path) -> list[Snippet]:
    """The code blocks' logical lines and the inline code spans of one Markdown file."""
    out: list[Snippet] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    prose: list[tuple[int, str]] = []  # (line number, text) outside fences, for the inline spans
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, language = m.group(2), m.group(3).lower()
        i += 1
        pending, start = "", 0
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            text = lines[i].strip()
            if language not in NOT_SHELL:
                if not pending:
                    start = i + 1
                if text.endswith("\\"):
                    pending += text[:-1] + " "
                else:
                    out.append(Snippet(path, start, pending + text, inline=False, language=language))
                    pending = ""
            else:
                out.append(Snippet(path, i + 1, text, inline=False, language=language))
            i += 1
        if pending:
            out.append(Snippet(path, start, pending, inline=False, language=language))
        i += 1  # the closing fence
    # Inline spans, paragraph by paragraph (a span may wrap across lines but never across a blank line).
    paragraph: list[tuple[int, str]] = []
    for number, text in [*prose, (0, "")]:
        if text.strip():
            paragraph.append((number, text))
            continue
        if paragraph:
            joined = "\n".join(t for _, t in paragraph)
            for m in INLINE.finditer(joined):
                first = paragraph[0][0] + joined.count("\n", 0, m.start())
                out.append(Snippet(path, first, " ".join(m.group(2).split()), inline=True))
        paragraph = []
    return out


def _tokens(text: str) -> list[str] | None:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: prose with an apostrophe, or a broken command
        return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, int]:
    """The (sub)parser the command names and how many leading words name it."""
    parser, used = make_parser(), 0
    while used < len(argv) and argv[used] in _subparsers(parser):
        parser, used = _subparsers(parser)[argv[used]], used + 1
    return parser, used


def _sample_value(option: argparse.Action | None) -> str:
    if option is not None and option.choices:
        return str(list(option.choices)[0])
    return "1"


def _takes_value(option: argparse.Action | None) -> bool:
    return option is not None and option.nargs != 0


def commands(snippet: Snippet) -> list[Command]:
    """The videogan commands of a snippet, placeholders filled in (see the module docstring)."""
    if "videogan" not in snippet.text or snippet.language in NOT_SHELL:
        return []
    text = snippet.text[2:] if snippet.text.startswith("$ ") else snippet.text
    tokens = _tokens(text)
    if tokens is None:
        if re.search(r"(^|[;&|]\s*)(\S*/)?videogan\s", text):
            return [Command(snippet, [], notes=["cannot split it into words (an unbalanced quote?)"])]
        return []
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in SEPARATORS:
            parts.append([])
        else:
            parts[-1].append(token)
    found = []
    for part in parts:
        while part and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", part[0]):  # VAR=value before the program
            part = part[1:]
        if not part:
            continue
        program = part[0].rsplit("/", 1)[-1]
        if part[0] == "videogan" or part[0].endswith("bin/videogan"):
            args = part[1:]
        elif (program.startswith("python") or program == "torchrun") and "videogan" in part:
            at = part.index("videogan")
            if at == 0 or part[at - 1] != "-m":
                continue
            args = part[at + 1:]
        else:
            continue
        found.append(_fill(snippet, args))
    return found


def _fill(snippet: Snippet, args: list[str]) -> Command:
    cleaned: list[str] = []
    skip_next = False
    for token in args:
        if skip_next:
            skip_next = False
            continue
        if REDIRECTS.match(token):
            skip_next = True
            if cleaned and cleaned[-1].isdigit():
                cleaned.pop()
            continue
        if token.startswith("[") and len(token) > 1:
            token = token[1:]
        if token.endswith("]") and "[" not in token and len(token) > 1:
            token = token[:-1]
        cleaned.append(token)
    parser, _ = _command_parser([t for t in cleaned if not t.startswith("-")])
    argv, elided = [], False
    for token in cleaned:
        option = parser._option_string_actions.get(argv[-1]) if argv and argv[-1].startswith("-") else None
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            if PLACEHOLDER.match(value) or value == "...":
                token = f"{name}={_sample_value(parser._option_string_actions.get(name))}"
        elif token in ("...", "…"):
            elided = True
            if not _takes_value(option):
                continue
            token = _sample_value(option)
        elif PLACEHOLDER.match(token) and not token.startswith("-"):
            token = _sample_value(option if _takes_value(option) else None)
        if "..." in token or "…" in token:  # RUN/checkpoints/step_...: a path left unfinished
            elided = True
        argv.append(token)
    return Command(snippet, argv, elided=elided)


def parse(command: Command) -> str | None:
    """None where the parser takes the command line, else why not (argparse's own words)."""
    if command.notes:
        return "; ".join(command.notes)
    if not command.argv:
        return "no command after videogan"
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = make_parser().parse_args(command.argv)
    except SystemExit as e:
        if e.code == 0:  # --help
            return None
        said = errors.getvalue().strip()
        message = said.splitlines()[-1] if said else f"exit {e.code}"
        parser, used = _command_parser(command.argv)
        mention = used == len(command.argv)  # only command names: `videogan study`, `videogan prepare`
        if (mention or command.elided) and "arguments are required" in message:
            return None
        return message
    for assignment in getattr(args, "set", None) or []:
        problem = _check_assignment(assignment)
        if problem:
            return problem
    return None


def _check_assignment(text: str) -> str | None:
    """--set KEY=VALUE: the key must exist; the value must convert, unless it is a placeholder."""
    try:
        key, value = parse_assignment(text)
    except ConfigError as e:
        return str(e)
    section, _, name = key.partition(".")
    if not name or re.search(r"[A-Z*]", name):  # train.KEY=VALUE, model.*: a placeholder
        return None
    if PLACEHOLDER.match(value) or value in ("...", ""):
        value = None
    try:
        if value is None:
            if section not in SECTIONS or name not in SECTIONS[section]:
                raise ConfigError(f"unknown config key {key!r}")
        else:
            override(Config(), key, value)
    except ConfigError as e:
        return str(e)
    return None


def config_keys(snippet: Snippet) -> list[str]:
    """`section.field` names in a snippet that claim to be config keys (see the module docstring)."""
    if snippet.language in ("python", "py", "pycon"):  # code: only keys written as strings
        candidates = re.findall(r"[\"']((?:" + "|".join(SECTIONS) + r")\.\w+)", snippet.text)
    elif snippet.language in NOT_SHELL:
        return []
    else:
        candidates = [f"{s}.{f}" for s, f in KEY.findall(snippet.text)]
    keys = []
    for key in candidates:
        section, name = key.split(".", 1)
        if re.search(r"[A-Z*]", name) or name in FILE_SUFFIXES:
            continue
        if section == "data" and name in DATA_MODULES:
            continue
        keys.append(key)
    return keys


def _all_snippets() -> list[Snippet]:
    return [s for path in doc_files() for s in snippets(path)]


def test_every_documented_command_parses():
    found, bad = 0, []
    for snippet in _all_snippets():
        for command in commands(snippet):
            found += 1
            problem = parse(command)
            if problem:
                bad.append(f"{command.where()}: `videogan {' '.join(command.argv)}` (from `{snippet.text}`): "
                           f"{problem}")
    assert found >= 10, f"only {found} videogan commands in README.md and docs/: is the extraction broken?"
    assert not bad, f"{len(bad)} documented command(s) the parser refuses:\n" + "\n".join(bad)


def test_every_documented_config_key_exists():
    found, bad = 0, []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for m in SET_KEY.finditer(text):  # --set in prose too
            section, name = m.group(1).split(".", 1)
            if not re.search(r"[A-Z*]", name) and name not in SECTIONS.get(section, ()):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{_shown(path)}:{line}: --set {m.group(1)}")
    for snippet in _all_snippets():
        for key in config_keys(snippet):
            found += 1
            section, name = key.split(".", 1)
            if name not in SECTIONS[section]:
                bad.append(f"{_shown(snippet.path)}:{snippet.line}: `{key}` (in `{snippet.text}`)")
    assert found >= 1, "no config key found in README.md and docs/: is the extraction broken?"
    bad = sorted(set(bad))
    sections = "; ".join(f"{s}: {', '.join(sorted(f))}" for s, f in SECTIONS.items())
    assert not bad, (f"{len(bad)} config key(s) named in the docs that videogan.config does not have:\n"
                     + "\n".join(bad) + f"\n(the keys: {sections})")


# ------------------------------------------------------------------ the reader itself, on made-up Markdown

SAMPLE = """\
Train with `videogan train --preset NAME --out
RUN` and look at `videogan study`; `from videogan import sample` is Python.

```bash
videogan train --out runs/a \\
    --steps 10 --set train.r1_weight=1   # a comment, with an apostrophe's quote
videogan pretrained; videogan generate --pretrained NAME --out samples/ > out.json
torchrun --standalone --nproc_per_node 2 -m videogan train --preset tiny --out runs/b
videogan prepare VIDEO_OR_FOLDER_OR_LIST.txt ... --out data/mine [--size 64] [--stride N]
videogan train ... --eval-every 1000 --eval-num 256
```

```python
cfg = preset("tiny"); override(cfg, "train.r1_weight", 1.0); model.eval()
```

Keys: `train.r1_weight`, `model.json`, `data.prepare`, `--set train.KEY=VALUE`, `train.nope`.
"""


@pytest.fixture
def sample_doc(tmp_path):
    path = tmp_path / "sample.md"
    path.write_text(SAMPLE)
    return path


def test_reader_finds_and_fills_commands(sample_doc):
    found = [c for s in snippets(sample_doc) for c in commands(s)]
    argvs = [c.argv for c in found]
    assert ["train", "--preset", "paper", "--out", "1"] in argvs  # across a line break; NAME -> a choice
    assert ["study"] in argvs
    assert ["train", "--out", "runs/a", "--steps", "10", "--set", "train.r1_weight=1"] in argvs
    assert ["pretrained"] in argvs and ["generate", "--pretrained", "1", "--out", "samples/"] in argvs
    assert ["train", "--preset", "tiny", "--out", "runs/b"] in argvs
    assert ["prepare", "VIDEO_OR_FOLDER_OR_LIST.txt", "--out", "data/mine", "--size", "64", "--stride",
            "1"] in argvs
    assert len(found) == 8  # not `from videogan import`, not the Python block
    assert all(parse(c) is None for c in found), [(c.argv, parse(c)) for c in found]


def test_reader_reports_bad_commands_and_keys(sample_doc):
    text = "videogan train --out r --stepz 3; videogan generate --num x"
    snippet = Snippet(sample_doc, 1, text, inline=True)
    problems = [parse(c) for c in commands(snippet)]
    assert "unrecognized arguments: --stepz 3" in problems[0] and "expected an integer" in problems[1]
    text = "videogan info --set model.g_width=wide --set model.nope=1"
    snippet = Snippet(sample_doc, 1, text, inline=False)
    assert "expected an integer" in parse(commands(snippet)[0])
    keys = [k for s in snippets(sample_doc) for k in config_keys(s)]
    assert sorted(keys) == ["train.nope", "train.r1_weight", "train.r1_weight", "train.r1_weight"]
