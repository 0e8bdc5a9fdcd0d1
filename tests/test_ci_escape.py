"""User-controlled text can never become a CI command (issue 9, item 3).

Each provider's log is read back by a small parser written from the runner's documented rules
(actions/runner ActionCommand.cs and ActionCommandManager.cs; azure-pipelines-agent Command.cs):
only mlci's own annotations, and the stop/resume fence around tool output, may parse.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlci import console, providers
from mlci.log_guard import LogGuard, neutralise
from mlci.stages._result import publish

_LINES = re.compile(r"\r\n|\r|\n")  # .NET ReadLine: CR, LF and CRLF end a line

# What .NET's String.TrimStart() (the GitHub runner's ActionCommand.TryParseV2) trims: the
# characters Char.IsWhiteSpace accepts (Unicode White_Space): U+0009..U+000D, U+0085, and the
# space, line and paragraph separators (Zs, Zl, Zp). Pinned here rather than taken from
# Python's str.isspace, which the guard uses: a parser sharing the guard's rule could not
# catch a gap in it. (isspace also holds U+001C..U+001F, which .NET does not trim: the guard
# then adds a harmless space.)
DOTNET_WHITESPACE = "".join(
    map(
        chr,
        [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    )
)

HOSTILE = [
    "::notice title=spoof::x",
    "::set-output name=result::passed",
    "::add-mask::secret",
    "::stop-commands::abc",
    "::error file=a.py,line=1::boom",
    "   ::warning::indented",
    "\u3000::debug::ideographic space",
    "\u2003::notice::em space",
    "\u0085::error::next line (not a line end for .NET ReadLine)",
    "\u2028\u00a0 ::error::line separator and no-break space",
    "\x0b\x0c::warning::vertical tab and form feed",
    "col\n::error::after a newline",
    "col\r::error::after a carriage return",
    "100%0A::error::escaped newline",
    "ok ##[error]legacy command anywhere",
    "ok ##[set-output name=a;]b",
    "ok ##vso[task.setvariable variable=a]b",
    "ok ##VSO[task.complete result=Failed]",
    "##[group]spoofed group",
]


def github_commands(log: str) -> list[tuple[str, str]]:
    """(command, data) for each line the GitHub runner would process, honouring stop-commands."""
    found: list[tuple[str, str]] = []
    stop_token: str | None = None
    for line in _LINES.split(log):
        command = _github_v2(line) or _github_v1(line)
        if command is None:
            continue
        if stop_token is not None:
            if command[0].lower() == stop_token.lower():
                found.append(command)
                stop_token = None
            continue
        if command[0] == "stop-commands":
            stop_token = command[1]
        found.append(command)
    return found


def _github_v2(line: str) -> tuple[str, str] | None:
    text = line.lstrip(DOTNET_WHITESPACE)
    if not text.startswith("::"):
        return None
    end = text.find("::", 2)
    if end < 0:
        return None
    return text[2:end].split(" ")[0], text[end + 2 :]


def _github_v1(line: str) -> tuple[str, str] | None:
    start = line.find("##[")
    end = line.find("]", start) if start >= 0 else -1
    if end < 0:
        return None
    return line[start + 3 : end].split(" ")[0], line[end + 1 :]


def azure_commands(log: str) -> list[tuple[str, str]]:
    """(command, data) for each ##vso[...] logging command and ##[...] formatting command."""
    found: list[tuple[str, str]] = []
    for line in _LINES.split(log):
        lower = line.lower()
        for prefix in ("##vso[", "##["):
            start = lower.find(prefix)
            end = line.find("]", start) if start >= 0 else -1
            if end >= 0:
                found.append((line[start + len(prefix) : end].split(" ")[0], line[end + 1 :]))
                break
    return found


PARSERS = {"github": github_commands, "azure": azure_commands}


@pytest.fixture(params=["github", "azure"])
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    kind: str = request.param
    monkeypatch.setenv("GITHUB_ACTIONS" if kind == "github" else "TF_BUILD", "true" if kind == "github" else "True")
    assert (runtime := providers.detect()) is not None and runtime.name == kind
    console.configure(verbose=True)
    return kind


def everything_printed(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_every_console_output_is_neutralised(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    for text in HOSTILE:
        console.say(f"column {text}")
        console.say(text)
        console.detail(text)
        console.progress(text)
        console.final(text)
        console.error(text)
        console.dump(text)
        with console.guarded_streams():
            print(text)  # a stage's or a library's own print()
            print(text, file=sys.stderr)
    log = everything_printed(capsys)
    assert PARSERS[provider](log) == []
    # The text stays readable: only a space before the character that completes a marker.
    assert log.count("notice title=spoof") == 9  # once in each of the 9 outputs above


def test_a_marker_split_across_writes_is_still_broken(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    for text in HOSTILE:
        with console.guarded_streams():
            for ch in text + "\n":
                print(ch, end="")
    assert PARSERS[provider](everything_printed(capsys)) == []


def test_own_annotations_are_one_command_whatever_they_hold(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = providers.runtime(provider)
    for text in HOSTILE:
        console.annotation(runtime.annotation("error", f"observed {text}", file=f"data/{text}.yml", line=3, title=text))
    commands = PARSERS[provider](everything_printed(capsys))
    name = "error" if provider == "github" else "task.logissue"
    assert [command for command, _ in commands] == [name] * len(HOSTILE)
    # The message round-trips through the runner's unescaping.
    if provider == "github":
        data = [d.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%") for _, d in commands]
    else:
        data = [d.replace("%0D", "\r").replace("%0A", "\n").replace("%AZP25", "%") for _, d in commands]
    assert data == [f"observed {text}" for text in HOSTILE]


def test_tool_output_is_fenced_on_github_and_neutralised_on_azure(
    provider: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line)\nprint('open line', end='')\n"
    code, output = console.run_tool([sys.executable, "-c", script, *HOSTILE], cwd=tmp_path, env={"PATH": ""})
    assert code == 0
    assert output.splitlines()[: len(HOSTILE) + 2] == "\n".join(HOSTILE).splitlines()[: len(HOSTILE) + 2]
    log = everything_printed(capsys)
    commands = PARSERS[provider](log)
    if provider == "github":
        (stop, token), (resume, _) = commands
        assert stop == "stop-commands" and re.fullmatch(r"[0-9a-f]{32}", token) and resume == token
        assert "::notice title=spoof::x\n" in log  # verbatim inside the fence
    else:
        assert commands == []


def test_outputs_cannot_smuggle_more_outputs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    publish({"result": "x\nMLCI_EOF\ninjected=1", "plain": "ok"}, "")
    text = out.read_text()
    delimiter = text.splitlines()[0].removeprefix("result<<")
    assert re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", delimiter)
    assert text == f"result<<{delimiter}\nx\nMLCI_EOF\ninjected=1\n{delimiter}\nplain=ok\n"
    monkeypatch.delenv("GITHUB_ACTIONS")
    monkeypatch.setenv("TF_BUILD", "True")
    console.configure()
    publish({"result": "passed\n##vso[task.setvariable variable=evil]1"}, "")
    assert azure_commands(capsys.readouterr().out) == [
        ("task.setvariable", "passed%0A##vso[task.setvariable variable=evil]1")
    ]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    text=st.text(
        alphabet=st.sampled_from(list(":#[]vsoVSO%\r\n \tx=,;" + DOTNET_WHITESPACE)) | st.characters(), max_size=40
    ),
    cut=st.integers(min_value=0, max_value=40),
)
def test_no_text_however_split_parses_as_a_command(text: str, cut: int) -> None:
    for kind, parse in PARSERS.items():
        guard = LogGuard(providers.runtime(kind))
        log = guard.feed(text[:cut]) + guard.feed(text[cut:]) + "\n"
        assert parse(log) == []
        # Only spaces are added: the text stays what it was, readable.
        assert log.replace(" ", "") == (text + "\n").replace(" ", "")
    assert neutralise(text, providers.runtime("jenkins")) == text


def test_every_dotnet_whitespace_before_a_command_is_leading_whitespace_to_the_guard() -> None:
    for ch in DOTNET_WHITESPACE:
        line = ch + "::error title=spoof::x\n"
        assert github_commands(line) == [("error", "x")]  # the runner reads it as a command
        guarded = neutralise(line, providers.runtime("github"))
        assert github_commands(guarded) == [], repr(ch)
        assert guarded == ch + ": :error title=spoof::x\n"


def test_hostile_column_name_through_data_test_on_github(tmp_path: Path) -> None:
    # End to end, in a separate process exactly as a runner starts it: a column named like a
    # command fails its not_null check, so it is printed in the table, the error line, the
    # annotation's title and the summary.
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import run_cli_process

    name = "ok\n::error title=spoof::pwned ##vso[task.complete result=Failed]"
    pq.write_table(pa.table({name: [1, None, 3]}), tmp_path / "data.parquet")
    (tmp_path / "contract.yml").write_text(
        "contract: 1\ndataset: {path: data.parquet}\n"
        f"columns:\n  - name: {json.dumps(name)}\n    type: integer\n    nullable: false\n"
    )
    (tmp_path / "mlci.yaml").write_text(
        "schema: 1\nproject: {name: demo, package: demo}\n"
        "data: {train: data.parquet, holdout: data.parquet, target: label}\n"
        'train: {entrypoint: "demo.train:train"}\ndata_test: {contract: contract.yml}\n'
    )
    done = run_cli_process("data-test", cwd=tmp_path, env={"GITHUB_ACTIONS": "true"})
    assert done.returncode == 1, done.stderr
    log = done.stdout + done.stderr
    assert [command for command, _ in github_commands(log)] == ["error"]  # mlci's own annotation
    assert "title=data-test train/not_null[ok%0A%3A%3Aerror title=spoof%3A%3Apwned" in log
    assert ": :error title=spoof::pwned" in log  # the name, shown, but never a command
