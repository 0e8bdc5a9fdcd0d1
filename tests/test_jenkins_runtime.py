"""The Jenkins runtime adapter (issue 12, item 2): a stage run by a Jenkinsfile finds its build,
hands its outputs over in a Java properties file the next stage reads back exactly, appends its
summary to a Markdown file the Jenkinsfile archives, and leaves the JUnit report `junit` in
`post { always }` collects on every path, failing and erroring ones too."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from provider_kit import HOSTILE, check_handover
from test_data_contracts import project as data_test_project

from mlci import providers
from mlci.cli import main as cli_main
from mlci.errors import ConfigError, UsageError
from mlci.providers.jenkins.runtime import escape_property

JENKINS = providers.runtime("jenkins")

# Keys and values java.util.Properties would misread unescaped: separators, comment markers,
# white space where load skips it, line ends, backslashes (a trailing one continues the line),
# non-ASCII in and beyond the BMP, and what a shell or Groovy would expand.
KEYS = ["result", "run-id", "a=b", "c:d", "#x", "!y", " lead", "sp ace", "back\\slash", "nl\nline", "tab\t", "é😀", ""]
VALUES = [
    " leading spaces",
    "trailing ",
    "=:#!",
    "multi\nline\r\nvalue\rend",
    "ends with a backslash\\",
    "ünïcödé 😀 \x00\x7f\x1b",
    "",
    HOSTILE,
    "${WORKSPACE} $(id) `id`",
    "\t\f tabs",
]
HOSTILE_OUTPUTS = dict(zip(KEYS, VALUES + VALUES, strict=False))


def read_properties(text: str) -> dict[str, str]:
    """java.util.Properties.load, re-implemented from its documentation (LineReader and
    loadConvert): an independent reader of what the adapter writes."""
    entries: dict[str, str] = {}
    natural = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(natural):
        line = natural[index].lstrip(" \t\f")
        index += 1
        if not line or line[0] in "#!":
            continue
        # A logical line goes on while it ends in an odd number of backslashes.
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1] + (natural[index].lstrip(" \t\f") if index < len(natural) else "")
            index += 1
        position, escaped = 0, False
        while position < len(line):
            char = line[position]
            if not escaped and char in "=: \t\f":
                break
            escaped = char == "\\" and not escaped
            position += 1
        key, rest = line[:position], line[position:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        entries[_unescape(key)] = _unescape(rest)
    return entries


def _unescape(text: str) -> str:
    out, position = [], 0
    while position < len(text):
        char = text[position]
        if char != "\\" or position + 1 == len(text):
            out.append(char)
            position += 1
            continue
        following = text[position + 1]
        if following == "u":
            out.append(chr(int(text[position + 2 : position + 6], 16)))
            position += 6
            continue
        out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(following, following))
        position += 2
    # Two \\uXXXX surrogates are one character, as Java's UTF-16 strings hold it.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def job(tmp: Path, name: str | None = "train") -> dict[str, str]:
    env = JENKINS.job_env(tmp)
    if name is None:
        del env["MLCI_JOB"]
    else:
        env["MLCI_JOB"] = name
    return env


def outputs_file(workspace: Path, name: str) -> Path:
    return workspace / ".mlci" / "out" / "jenkins" / f"{name}.properties"


# ---------------------------------------------------------------- detection and the kit


def test_detected_from_any_of_the_build_variables_jenkins_sets() -> None:
    assert JENKINS.detected({"JENKINS_URL": "https://ci/"})
    assert JENKINS.detected({"BUILD_URL": "https://ci/job/x/1/"})
    # A controller without a configured URL sets neither, but BUILD_TAG in every build.
    assert JENKINS.detected({"BUILD_TAG": "jenkins-demo-main-7"})
    assert not JENKINS.detected({"BUILD_TAG": "other-7", "JENKINS_URL": "", "BUILD_URL": ""})
    assert JENKINS.run_url({"BUILD_URL": ""}) is None
    assert JENKINS.run_url(JENKINS.job_env(Path("/ws"))) == "https://ci.example/job/demo/job/main/1/"


def test_the_kit_reads_outputs_and_the_summary_back_as_for_a_rendering_provider(tmp_path: Path) -> None:
    # The kit's runtime checks as they run once jenkins is in providers.NAMES (rendering=True).
    check_handover(JENKINS, tmp_path, rendering=True)
    assert sorted(p.name for p in (tmp_path / ".mlci" / "out" / "jenkins").iterdir()) == [
        "train.md",
        "train.properties",
    ]


# ---------------------------------------------------------------- the properties file


def test_outputs_file_is_java_properties_one_line_per_key(tmp_path: Path) -> None:
    env = job(tmp_path)
    assert JENKINS.set_outputs({"result": "passed", "run-id": "a1b2", "empty": None}, env) == []
    path = outputs_file(tmp_path, "train")
    assert path.read_text(encoding="utf-8") == (
        "# mlci outputs of Jenkins job train: java.util.Properties format\nresult=passed\nrun-id=a1b2\nempty=\n"
    )
    # A second stage of `mlci run` in the job: its keys replace theirs, the others stay, once each.
    JENKINS.set_outputs({"result": "failed", "version": "3"}, env)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1:] == ["run-id=a1b2", "empty=", "result=failed", "version=3"]
    # Plain values stay plain, so a sh step reads one with sed as the Jenkinsfile does.
    run_id = subprocess.run(
        ["sed", "-n", "s/^run-id=//p", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert run_id == "a1b2\n"


def test_every_key_and_value_is_escaped_as_java_properties_store_does(tmp_path: Path) -> None:
    env = job(tmp_path, "register")
    JENKINS.set_outputs(HOSTILE_OUTPUTS, env)
    text = outputs_file(tmp_path, "register").read_text(encoding="ascii")  # \uXXXX: pure ASCII
    assert len(text.splitlines()) == 1 + len(HOSTILE_OUTPUTS)  # every value one line, however it was
    assert read_properties(text) == HOSTILE_OUTPUTS
    # Set again, each key's line is replaced, never doubled, whatever its escapes look like.
    JENKINS.set_outputs({key: "again" for key in HOSTILE_OUTPUTS}, env)
    text = outputs_file(tmp_path, "register").read_text(encoding="ascii")
    assert read_properties(text) == dict.fromkeys(HOSTILE_OUTPUTS, "again")
    assert len(text.splitlines()) == 1 + len(HOSTILE_OUTPUTS)
    # The escapes of Properties.saveConvert, exactly.
    assert escape_property(" a b=c:d#e!f\\\t\n\r\f", key=True) == "\\ a\\ b\\=c\\:d\\#e\\!f\\\\\\t\\n\\r\\f"
    assert escape_property("  a b", key=False) == "\\  a b"
    assert escape_property("é😀\x7f~", key=False) == "\\u00E9\\uD83D\\uDE00\\u007F~"


JAVA_READER = """\
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.*;

public class ReadProperties {
    public static void main(String[] files) throws IOException {
        HexFormat hex = HexFormat.of();
        for (String file : files) {
            Properties bytes = new Properties();  // load(InputStream): ISO 8859-1
            try (InputStream in = new FileInputStream(file)) { bytes.load(in); }
            Properties chars = new Properties();  // load(Reader), as readProperties reads text
            try (Reader in = new InputStreamReader(new FileInputStream(file), StandardCharsets.UTF_8)) {
                chars.load(in);
            }
            if (!bytes.equals(chars)) throw new IllegalStateException(file + ": the two loads differ");
            for (String key : new TreeSet<>(bytes.stringPropertyNames())) {
                System.out.println(hex.formatHex(key.getBytes(StandardCharsets.UTF_8)) + " "
                    + hex.formatHex(bytes.getProperty(key).getBytes(StandardCharsets.UTF_8)));
            }
        }
    }
}
"""


def test_java_util_properties_reads_every_output_back_exactly(tmp_path: Path) -> None:
    """The real reader, once (one JVM start, ~2 s): what readProperties and a Groovy step see.
    The JDK 17 the Groovy stub runs on (no skip: .ci/run's groovy brings it; without one the
    harness fails naming the install)."""
    from jenkins_stub import java_home

    JENKINS.set_outputs(HOSTILE_OUTPUTS, job(tmp_path, "train"))
    (tmp_path / "ReadProperties.java").write_text(JAVA_READER, encoding="utf-8")
    run = subprocess.run(
        [
            str(java_home() / "bin" / "java"),
            str(tmp_path / "ReadProperties.java"),
            str(outputs_file(tmp_path, "train")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    read = dict(line.partition(" ")[::2] for line in run.stdout.splitlines())
    assert {bytes.fromhex(k).decode(): bytes.fromhex(v).decode() for k, v in read.items()} == HOSTILE_OUTPUTS


# ---------------------------------------------------------------- file names and places


def test_files_are_named_by_mlci_job_under_the_workspace_or_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = job(tmp_path, None)  # a stage without MLCI_JOB
    JENKINS.set_outputs({"result": "passed"}, env)
    JENKINS.add_summary("### mlci lint: passed\n\nno findings\n\n", env)
    JENKINS.add_summary("### mlci test: failed", env)  # each stage of `mlci run` appends its section
    out = tmp_path / ".mlci" / "out" / "jenkins"
    assert (out / "stage.md").read_text(encoding="utf-8") == (
        "### mlci lint: passed\n\nno findings\n\n### mlci test: failed\n\n"
    )
    assert read_properties((out / "stage.properties").read_text(encoding="utf-8")) == {"result": "passed"}
    # No WORKSPACE (mlci run by hand on an agent): the current directory.
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    JENKINS.set_outputs({"result": "error"}, {"BUILD_TAG": "jenkins-x-1", "MLCI_JOB": "deploy-staging"})
    assert [p.relative_to(elsewhere).as_posix() for p in elsewhere.rglob("*") if p.is_file()] == [
        ".mlci/out/jenkins/deploy-staging.properties"
    ]


@pytest.mark.parametrize("name", ["../train", "a/b", ".hidden", "tr ain", "x\ny"])
def test_an_mlci_job_that_is_no_file_name_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError) as caught:
        JENKINS.set_outputs({"result": "passed"}, job(tmp_path, name))
    assert str(caught.value) == (
        f"MLCI_JOB is {name!r}, not a job id; set it in the stage's environment {{ }} to letters, digits, "
        "'-', '_' or '.' (the Jenkinsfile mlci renders sets the stage's job id)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_symlinked_output_folder_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".mlci" / "out").mkdir(parents=True)
    (tmp_path / ".mlci" / "out" / "jenkins").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is a symlink"):
        JENKINS.set_outputs({"result": "passed"}, job(tmp_path))
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ---------------------------------------------------------------- stages under Jenkins


def test_a_failing_and_an_erroring_stage_leave_junit_outputs_and_summary_where_the_jenkinsfile_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = data_test_project(tmp_path, "max")  # a contract one check of which fails
    for name, value in job(root, "data-test").items():
        monkeypatch.setenv(name, value)
    out = root / ".mlci" / "out"
    assert cli_main(["data-test", "-C", str(root)]) == 1
    failures = ET.parse(out / "data-test.xml").getroot().findall("testcase/failure")
    assert [f.get("message") for f in failures] == ["observed 100.25, expected <= 100"]
    assert read_properties(outputs_file(root, "data-test").read_text(encoding="utf-8")) == {"result": "failed"}
    assert (
        (out / "jenkins" / "data-test.md")
        .read_text(encoding="utf-8")
        .startswith("### mlci data-test: failed\n\ndata contract failed: train: 1 of ")
    )
    # The stage errors (its contract is gone): an errored suite stands in, `junit` never finds none.
    (root / "contract.yml").unlink()
    assert cli_main(["data-test", "-C", str(root)]) == 2
    suite = ET.parse(out / "data-test.xml").getroot()
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    assert read_properties(outputs_file(root, "data-test").read_text(encoding="utf-8")) == {"result": "error"}
    # mlci.yaml broken before the unit-test stage starts: its junit.xml is written all the same.
    monkeypatch.setenv("MLCI_JOB", "unit-test")
    (root / "mlci.yaml").write_text((root / "mlci.yaml").read_text() + "test:\n  pathz: [tests]\n")
    assert cli_main(["test", "-C", str(root)]) == 2
    error = ET.parse(out / "junit.xml").getroot().find("testcase/error")
    assert error is not None and "unknown key 'test.pathz'" in (error.get("message") or "")
    assert json.loads((out / "test.json").read_text())["status"] == "error"
    capsys.readouterr()
