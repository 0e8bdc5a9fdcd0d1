"""The provider conformance kit (tests/provider_kit.py) over every provider in
`mlci.providers.NAMES` and every runtime adapter (NAMES and RUNTIME_ONLY), then over a
throwaway provider registered by one line, which passes it unchanged for the local target
and is refused, with the one line a user sees, for Databricks (issue 10, item 5)."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from provider_kit import CASE_IDS, COMBOS, RENDER_CHECKS, Case, Combo, check_golden, check_parse_back, check_runtime
from update_golden import write_goldens

from mlci import providers
from mlci.errors import UsageError
from mlci.manifest import MANIFEST_PATH

Check = Callable[[Case], None]
AZURE = dict(providers.runtime("azure").documented_env)
JENKINS = dict(providers.runtime("jenkins").documented_env)


@pytest.mark.parametrize("check", RENDER_CHECKS, ids=[check.__name__ for check in RENDER_CHECKS])
@pytest.mark.parametrize("combo", COMBOS, ids=CASE_IDS)
@pytest.mark.parametrize("provider", tuple(providers.NAMES))
def test_provider_keeps_the_contract(provider: str, combo: Combo, check: Check, tmp_path: Path) -> None:
    check(Case(provider, combo, tmp_path))


@pytest.mark.parametrize("name", (*providers.NAMES, *providers.RUNTIME_ONLY))
def test_runtime_adapter_keeps_the_contract(name: str, tmp_path: Path) -> None:
    check_runtime(name, tmp_path)


WRITERS = {"write_text", "write_bytes", "open", "copy", "copyfile", "copytree", "move", "rename", "replace"}


def test_no_test_writes_a_golden() -> None:
    """Goldens are written by scripts/update_golden.py only: no test calls a file writer on a
    golden path, nor write_goldens without a root of its own (its default is tests/golden)."""
    writers = []
    for module in sorted(REPO.glob("tests/**/*.py")):
        text = module.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func not in WRITERS | {"write_goldens"}:
                continue
            segment = ast.unparse(node).lower()
            if (func in WRITERS and "golden" in segment) or (func == "write_goldens" and len(node.args) < 2):
                writers.append(f"{module.relative_to(REPO)}:{node.lineno}: {segment[:80]}")
    assert writers == []


# ---------------------------------------------------------------- a throwaway provider, one line


# The one place a target meets a CI system: the value a target gives per CI system (Databricks'
# auth type, `ByProvider`). The throwaway provider has no Databricks entry, so it renders the
# local target and refuses Databricks, as any provider without an entry must.
LOCAL_COMBOS = [combo for combo in COMBOS if combo[0] == "local"]
DATABRICKS_COMBOS = [combo for combo in COMBOS if combo[0] == "databricks"]
REFUSAL = (
    "the databricks target cannot federate from CI provider 'throwaway': "
    "use ci.provider azure or github (mlci new --provider), or another target"
)


@pytest.fixture
def throwaway(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The throwaway provider registered by its one line; its goldens written by the golden
    script's own function into a temporary folder (the kit reads them from there)."""
    monkeypatch.setitem(providers.NAMES, "throwaway", "throwaway_provider")
    golden_root = tmp_path_factory.mktemp("golden")
    write_goldens("throwaway", golden_root, LOCAL_COMBOS)
    return golden_root


def test_a_throwaway_provider_passes_the_whole_kit(throwaway: Path, tmp_path: Path) -> None:
    for combo in LOCAL_COMBOS:
        for check in RENDER_CHECKS:
            check(Case("throwaway", combo, tmp_path, golden_root=throwaway))
    for combo in DATABRICKS_COMBOS:  # the renderer and the model's parse-back view refuse alike
        case = Case("throwaway", combo, tmp_path, golden_root=throwaway)
        for check in (check_golden, check_parse_back):
            with pytest.raises(UsageError) as error:
                check(case)
            assert str(error.value) == REFUSAL
    check_runtime("throwaway", tmp_path)
    assert sorted(p.name for p in (throwaway / "throwaway" / "local-vendored-retrain" / ".throwaway").iterdir()) == [
        "cd.json",
        "ci.json",
        "retrain.json",
    ]


def test_mlci_new_and_upgrade_on_a_throwaway_provider(
    throwaway: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        run_cli("new", "tiny", "--defaults", "--no-git", "--output-dir", str(tmp_path), "--provider", "throwaway") == 0
    )
    project = tmp_path / "tiny"
    manifest = json.loads((project / MANIFEST_PATH).read_text(encoding="utf-8"))
    assert "provider: throwaway" in (project / "mlci.yaml").read_text(encoding="utf-8")
    assert {".throwaway/ci.json", ".throwaway/cd.json"} <= set(manifest["managed"])
    assert not (project / ".github").exists()
    readme = (project / "README.md").read_text(encoding="utf-8")  # its own words, none of GitHub's
    assert "├── .throwaway/  " in readme and "writes each pipeline of the model" in readme
    assert ".github" not in readme and "workflow" not in readme
    assert run_cli("upgrade", "--check", str(project)) == 0  # the manifest's hashes are the provider's files
    # A newer provider renders its file differently: `mlci upgrade` brings the project along.
    import throwaway_provider

    rendered = throwaway_provider.Throwaway.render
    monkeypatch.setattr(
        throwaway_provider.Throwaway,
        "render",
        lambda self, *args: {path: b'{"newer": 1}\n' for path in rendered(self, *args)},
    )
    assert run_cli("upgrade", str(project)) == 0
    assert (project / ".throwaway" / "ci.json").read_bytes() == b'{"newer": 1}\n'


def test_a_provider_without_the_targets_entry_is_refused_before_anything_is_written(
    throwaway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = ("new", "tiny", "--defaults", "--no-git", "--output-dir", str(tmp_path), "--target", "databricks")
    assert run_cli(*new, "--provider", "throwaway") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(REFUSAL)
    assert list(tmp_path.iterdir()) == []
    # `mlci render` after switching a Databricks project's ci.provider: refused, nothing changed.
    assert run_cli(*new, "--provider", "github") == 0
    project = tmp_path / "tiny"
    config = project / "mlci.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("provider: github", "provider: throwaway"))
    before = project_files(project)
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(REFUSAL)
    assert project_files(project) == before


def project_files(project: Path) -> dict[str, bytes]:
    """Every file of the project but the lock `mlci render` takes (its holder's pid and time)."""
    files = {p.relative_to(project).as_posix(): p for p in sorted(project.rglob("*")) if p.is_file()}
    return {name: path.read_bytes() for name, path in files.items() if name != ".mlci/lock"}


# ---------------------------------------------------------------- each runtime's documented lines


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GITHUB_ACTIONS": "true"}, "github"),
        (AZURE, "azure"),
        ({"TF_BUILD": "true"}, "azure"),
        (JENKINS, "jenkins"),
        ({"GITHUB_ACTIONS": "true", "TF_BUILD": "True", "JENKINS_URL": "x"}, "github"),  # the order of today
        ({"GITHUB_ACTIONS": "1", "TF_BUILD": "False", "JENKINS_URL": ""}, None),
    ],
)
def test_detect_finds_the_ci_system_from_its_variable(env: dict[str, str], name: str | None) -> None:
    runtime = providers.detect(env)
    assert (runtime.name if runtime else None) == name


def test_run_urls_link_to_the_run() -> None:
    github = providers.runtime("github")
    assert (
        github.run_url({"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/churn"})
        == "https://github.com/acme/churn/actions/runs/42"
    )
    assert github.run_url({"GITHUB_SERVER_URL": "https://ghe.acme"}) is None
    azure = providers.runtime("azure")
    env = {"BUILD_BUILDID": "7", "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/", "SYSTEM_TEAMPROJECT": "churn"}
    assert azure.run_url(env) == "https://dev.azure.com/acme/churn/_build/results?buildId=7"
    assert azure.run_url(AZURE) is None
    jenkins = providers.runtime("jenkins")
    assert jenkins.run_url({**JENKINS, "BUILD_URL": "https://ci.example/job/churn/12/"}) == (
        "https://ci.example/job/churn/12/"
    )
    assert jenkins.run_url(JENKINS) is None


def test_azure_logissue_escapes_every_value() -> None:
    line = providers.runtime("azure").annotation(
        "warning", "100% wrong\r\nnext", file="data/a;b].yml", line=3, col=None, title="ignored"
    )
    assert (
        line == "##vso[task.logissue type=warning;sourcepath=data/a%3Bb%5D.yml;linenumber=3]100%AZP25 wrong%0D%0Anext"
    )


def test_azure_output_variables_escape_names_and_values() -> None:
    lines = providers.runtime("azure").set_outputs({"run;id]": "50%\nx", "empty": None}, AZURE)
    assert lines == [
        "##vso[task.setvariable variable=run%3Bid%5D;isOutput=true]50%AZP25%0Ax",
        "##vso[task.setvariable variable=empty;isOutput=true]",
    ]


def test_azure_summary_is_a_file_of_its_own_uploaded_by_one_command(tmp_path: Path) -> None:
    azure = providers.runtime("azure")
    agent_tmp = tmp_path / "a;b]%"  # the path is escaped like any other command value
    agent_tmp.mkdir()
    env = {**AZURE, "AGENT_TEMPDIRECTORY": str(agent_tmp)}
    first = azure.add_summary("### mlci lint: passed\n\nno findings\n\n", env)
    second = azure.add_summary("### mlci test: failed", env)  # each stage of `mlci run` keeps its own
    escaped = str(agent_tmp).replace("%", "%AZP25")
    assert first == [f"##vso[task.uploadsummary]{escaped}/mlci-summary-1.md"]
    assert second == [f"##vso[task.uploadsummary]{escaped}/mlci-summary-2.md"]
    assert (agent_tmp / "mlci-summary-1.md").read_text(encoding="utf-8") == "### mlci lint: passed\n\nno findings\n"
    assert (agent_tmp / "mlci-summary-2.md").read_text(encoding="utf-8") == "### mlci test: failed\n"
    assert azure.add_summary("### x", AZURE) == []  # no agent folder: nothing written, nothing printed


def test_jenkins_reads_no_commands(tmp_path: Path) -> None:
    # Outputs and the summary go to files of the workspace (tests/test_jenkins_runtime.py), never
    # to GitHub's files a job's environment may carry along.
    jenkins = providers.runtime("jenkins")
    github = tmp_path / "github"
    github.mkdir()
    env = {**JENKINS, "WORKSPACE": str(tmp_path / "ws"), "GITHUB_OUTPUT": str(github / "out")}
    env["GITHUB_STEP_SUMMARY"] = str(github / "summary.md")
    assert jenkins.annotation("error", "x", file="a.py", line=1) is None
    assert jenkins.set_outputs({"result": "passed"}, env) == []
    assert jenkins.add_summary("### done", env) == []
    assert list(github.iterdir()) == []  # GitHub's files are GitHub's only
    assert sorted(p.name for p in (tmp_path / "ws" / ".mlci" / "out" / "jenkins").iterdir()) == [
        "stage.md",
        "stage.properties",
    ]
    assert jenkins.stop_commands("t") is None and jenkins.markers == () and jenkins.line_start_marker == ""
