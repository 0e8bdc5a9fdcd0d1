"""The provider conformance kit: what every provider in `mlci.providers.NAMES` must do.

Each check takes a provider's name (and the option combination it renders), looks the provider
up in the registry and knows nothing else about it: tests/test_provider_contract.py runs every
check over the registry, and a provider registered by one line (the throwaway provider of
tests/throwaway_provider/) passes them unchanged for the local target. The one thing a target
knows per CI system is a `ByProvider` credential value (Databricks' auth type): a provider
without its entry is refused for that target (UsageError, exit 2: "the databricks target cannot
federate from CI provider ..."), which is what the throwaway provider gets for the Databricks
combinations. Goldens are written only by
scripts/update_golden.py (write_goldens); the kit renders with that script's own functions
and compares.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

from mlci import pipeline, providers, templates
from mlci.project import project_from_text
from mlci.providers.base import CIRuntime

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import COMBOS, GOLDEN_ROOT, combo_answers, combo_name, config_text, render_ci_files

Combo = tuple[str, str, str]
CASE_IDS = [combo_name(combo) for combo in COMBOS]


@dataclass(frozen=True)
class Case:
    """One provider rendering one combination of the option matrix."""

    provider: str
    combo: Combo
    tmp: Path  # a scratch directory (the project root the render resolves paths against)
    golden_root: Path = GOLDEN_ROOT  # holds <provider>/<combination>/, as write_goldens writes it

    def render(self) -> dict[str, bytes]:
        return render_ci_files(self.provider, self.combo, self.tmp)


def check_golden(case: Case) -> None:
    """The exact files, against tests/golden/<provider>/<combination>/. After an intended template
    change run `python scripts/update_golden.py`, review the diff and record it in CHANGELOG.md
    (every template change is an upgrade for existing projects)."""
    files = case.render()
    golden = case.golden_root / case.provider / combo_name(case.combo)
    expected = {p.relative_to(golden).as_posix(): p.read_bytes() for p in sorted(golden.rglob("*")) if p.is_file()}
    if files == expected:
        return
    diff = "".join(
        line
        for name in sorted(set(files) | set(expected))
        for line in difflib.unified_diff(
            expected.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True),
            files.get(name, b"").decode("utf-8", "replace").splitlines(keepends=True),
            f"golden/{name}",
            f"rendered/{name}",
        )
    )
    pytest.fail(
        f"the rendered files differ from {golden}; if the change is intended, run "
        f"`python scripts/update_golden.py` and review `git diff tests/golden`:\n{diff[:6000]}"
    )


def check_every_path_is_managed(case: Case) -> None:
    # A rendered path missed by `managed` would be recorded as seeded and never upgraded again.
    files = case.render()
    assert files
    assert [path for path in files if not templates.is_managed(path, case.provider)] == []
    # ... and the union every manifest is checked against holds them too.
    assert all(templates.is_managed(path) for path in files)


def check_text_files(case: Case) -> None:
    """Every rendered file is UTF-8 text ending in one newline, with relative POSIX paths."""
    for path, data in case.render().items():
        assert not path.startswith("/") and "\\" not in path and ".." not in path.split("/"), path
        data.decode("utf-8")  # raises on anything else
        assert data.endswith(b"\n") and not data.endswith(b"\n\n"), path
        assert b"\r" not in data, path


# Project text no CI file may show, in one value: what YAML, an Azure macro, a GitHub
# expression, a Groovy string or a shell would read as code.
HOSTILE_TEXT = (
    '0.1.0\non:\n  pull_request_target:\n# x"\u2028trigger: none\nx: " $(System.AccessToken) '
    "${{ parameters.azureServiceConnection }} $[ variables.x ] a: b # c ${System.exit(1)} "
    "'''\n''' \"${x}\" $x \\' \\\\ x')\nsh 'id'\n// */ /* $(id) `id`"
)


def check_project_text_never_reaches_the_files(case: Case) -> None:
    """A provider reads mlci.yaml's ci settings only (RenderContext): a description or author of
    any shape changes no byte of its files."""
    from mlci import templates

    answers = combo_answers(case.provider, case.combo)
    hostile = {**answers, "description": HOSTILE_TEXT, "author": HOSTILE_TEXT}
    assert templates.render_ci(config_text(hostile), hostile, case.tmp) == case.render()


def check_deterministic(case: Case) -> None:
    assert case.render() == case.render()


def check_parse_back(case: Case) -> None:
    """The files read back into exactly the pipeline model they were rendered from, as far as
    a CI file can show it (pipeline.as_rendered: which credential set which variable is not
    written down anywhere)."""
    found = providers.get(case.provider)
    config = project_from_text(config_text(combo_answers(case.provider, case.combo)), case.tmp).config
    expected = {p.id: pipeline.as_rendered(p, case.provider) for p in pipeline.build(config)}
    back = found.parse_back(case.render())
    assert len(back) == len(expected) and {p.id: p for p in back} == expected  # CI files have no order


# Every rendering check of the kit: the contract test and the throwaway provider run them all.
RENDER_CHECKS: tuple[Callable[[Case], None], ...] = (
    check_golden,
    check_every_path_is_managed,
    check_text_files,
    check_deterministic,
    check_parse_back,
    check_project_text_never_reaches_the_files,
)


# ---------------------------------------------------------------- runtime adapters

HOSTILE = "100% wrong\r\nnext::x ##vso[task.complete] ${{ secrets.X }}"


def check_runtime(name: str, tmp: Path) -> None:
    """What every runtime adapter does, on the environment its CI system documents and on a
    job's environment whose files live under `tmp` (`job_env`). A provider that renders must
    hand outputs over and write the summary; a runtime-only one may do nothing, but what it
    does must be readable."""
    adapter = providers.runtime(name)
    rendering = name in providers.NAMES
    if rendering:  # detection and the provider agree on one adapter
        assert providers.get(name).runtime is adapter
    documented = adapter.documented_env
    assert adapter.detected(documented)
    assert not adapter.detected({})
    assert adapter.run_url({}) is None  # no run to link to without the CI system's variables
    # The registry's detection finds it on its own environment (the first that claims it wins).
    detected = providers.detect(documented)
    assert detected is not None and detected.detected(documented)
    # An annotation is one line whatever the message holds, and a line the runner reads.
    line = adapter.annotation("error", HOSTILE, file="a;b].py", line=3, title="t")
    if line is not None:
        assert "\n" not in line and "\r" not in line
        assert line.lstrip().startswith(adapter.line_start_marker) or any(m in line.lower() for m in adapter.markers)
    stop = adapter.stop_commands("token")
    if stop is not None:
        assert all("token" in line for line in stop)
    # Every command line stays one line whatever the values hold (in a job of its own).
    (tmp / "hostile").mkdir()
    hostile_env = adapter.job_env(tmp / "hostile")
    for command in (
        *adapter.set_outputs({"result": HOSTILE}, hostile_env),
        *adapter.add_summary(HOSTILE, hostile_env),
    ):
        assert "\n" not in command and "\r" not in command
    (tmp / "job").mkdir()
    check_handover(adapter, tmp / "job", rendering)


def check_handover(adapter: CIRuntime, tmp: Path, rendering: bool) -> None:
    """Outputs and the summary reach the runner: named in the returned lines or in files under
    `tmp`, where the job's environment puts them."""
    env = adapter.job_env(tmp)
    assert adapter.detected(env) and dict(adapter.documented_env).items() <= env.items()
    outside = [v for v in env.values() if Path(v).is_absolute() and not Path(v).is_relative_to(tmp)]
    assert outside == []
    before = files_under(tmp)
    outputs = {"result": "passed", "run-id": "a1"}
    handed = adapter.set_outputs(outputs, env)
    readable = [*handed, *(line for text in files_under(tmp).values() for line in text.splitlines())]
    if rendering or handed or files_under(tmp) != before:
        unread = [name for name, value in outputs.items() if not any(name in r and value in r for r in readable)]
        assert unread == [], f"{adapter.name}: outputs {unread} are neither in {handed} nor in a file under {tmp}"
    before = files_under(tmp)
    lines = adapter.add_summary("### done", env)
    if rendering or lines or files_under(tmp) != before:
        holding = [path for path, text in files_under(tmp).items() if "### done" in text]
        assert holding, f"{adapter.name}: the summary is in no file under {tmp} (lines: {lines})"
        # A file the runner only finds through a returned line must be named by one.
        assert not lines or any(path in line for path in holding for line in lines), lines


def files_under(folder: Path) -> dict[str, str]:
    return {str(p): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*")) if p.is_file()}


def model_graph(found: tuple[pipeline.Pipeline, ...], *, credentials: bool = True) -> dict[str, object]:
    """What every CI system must agree on for one option combination: jobs, needs, stages and
    options, environments, hand-overs, state, branch guards, triggers and (unless told
    otherwise) the names of the credentials' variables and whether they federate; their values
    differ by design."""
    return {
        p.id: (
            p.triggers,
            tuple(
                (
                    j.id,
                    j.needs,
                    j.stage.name if j.stage else None,
                    dict(j.options),
                    j.environment,
                    j.inputs_from,
                    j.restores_state,
                    j.saves_state,
                    j.restores_registry,
                    j.saves_registry,
                    j.only_on_branch,
                    j.gate,
                    j.capabilities if credentials else j.capabilities - {pipeline.OIDC_TOKEN},
                    tuple(v.name for c in j.credentials for v in c.env) if credentials else (),
                )
                for j in p.jobs
            ),
        )
        for p in found
    }
