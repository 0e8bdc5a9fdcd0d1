"""What the YAML loader refuses in mlci.yaml and contracts alike: NaN and infinities in any
spelling, deep nesting, aliases (the billion laughs) and text that is not UTF-8. Each is one
ConfigError naming the file, the line and the fix (exit 2), never a traceback or a silent pass."""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from pathlib import Path

import pytest
import yaml
from conftest import MINIMAL_CONFIG, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci.config import Config, load_project, parse_config
from mlci.errors import ConfigError
from mlci.typed_yaml import MAX_DEPTH, NON_FINITE_FIX

# Bounded and derandomized: the same examples on every run, a fixed small cost.
BOUNDED = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Every spelling YAML 1.1 (PyYAML's resolver) reads as NaN or an infinity, the explicit-tag
# forms, and decimal literals that overflow to infinity.
NON_FINITE = [
    *(f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")),
    ".nan",
    ".NaN",
    ".NAN",
    "!!float nan",
    "!!float -inf",
    "!!float 1e999",
    "1.0e+999",
    "-2.5e+400",
    ".5e+999",
]


def float_keys(cls: type = Config, where: str = "") -> list[str]:
    """The dotted key of every float in the mlci.yaml schema (a new one is covered too)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for fld in dataclasses.fields(cls):
        tp = hints[fld.name]
        key = f"{where}.{fld.name}" if where else fld.name
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if float in args:
            keys.append(key)
        elif dataclasses.is_dataclass(tp):
            keys.extend(float_keys(tp, key))
    return keys


def with_value(key: str, spelling: str) -> str:
    """MINIMAL_CONFIG with `key` (section.name, or a train.params path) set to `spelling`."""
    section, _, name = key.partition(".")
    if section == "train":  # train.params...: inside the existing train mapping
        return MINIMAL_CONFIG.replace(
            "  entrypoint: churn_model.train:train\n",
            "  entrypoint: churn_model.train:train\n" + params_block(name, spelling),
        )
    # A key nested deeper (monitor.log.flush_seconds) gets one mapping per level.
    *parents, leaf = name.split(".")
    block = "".join(f"{'  ' * (depth + 1)}{part}:\n" for depth, part in enumerate(parents))
    block += f"{'  ' * (len(parents) + 1)}{leaf}: {spelling}\n"
    if f"\n{section}:\n" in MINIMAL_CONFIG:  # register: already there
        return MINIMAL_CONFIG.replace(f"\n{section}:\n", f"\n{section}:\n{block}")
    return MINIMAL_CONFIG + f"{section}:\n{block}"


def params_block(path: str, spelling: str) -> str:
    if path == "params.lr":
        return f"  params:\n    lr: {spelling}\n"
    if path == "params.grid.alpha[1]":
        return f"  params:\n    grid:\n      alpha: [0.1, {spelling}]\n"
    assert path == "params.layers[0].dropout"
    return f"  params:\n    layers:\n      - dropout: {spelling}\n"


def line_of(text: str, spelling: str) -> int:
    return text[: text.rindex(spelling)].count("\n") + 1


PARAM_KEYS = ["train.params.lr", "train.params.grid.alpha[1]", "train.params.layers[0].dropout"]


def test_the_schema_floats_are_the_ones_the_issue_names() -> None:
    assert {"test.coverage_min", "deploy.ready_timeout", "register.champion_tolerance"} <= set(float_keys())


@BOUNDED
@given(key=st.sampled_from(float_keys() + PARAM_KEYS), spelling=st.sampled_from(NON_FINITE))
def test_nan_and_infinity_are_refused_in_every_number(key: str, spelling: str) -> None:
    text = with_value(key, spelling)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mlci.yaml")
    value = yaml.safe_load(f"x: {spelling}")["x"]  # what YAML itself reads: nan, inf or -inf
    assert caught.value.message == f"mlci.yaml:{line_of(text, spelling)}: {key} is {value}; {NON_FINITE_FIX}"


@BOUNDED
@given(value=st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False))
def test_finite_numbers_still_load(value: float) -> None:
    spelling = f"{value:.6f}"
    config, _ = parse_config(with_value("test.coverage_min", spelling), "mlci.yaml")
    assert config.test.coverage_min == float(spelling)
    params, _ = parse_config(with_value("train.params.grid.alpha[1]", spelling), "mlci.yaml")
    assert params.train.params == {"grid": {"alpha": [0.1, float(spelling)]}}


def test_the_coverage_gate_cannot_be_switched_off_with_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mlci.yaml").write_text(MINIMAL_CONFIG + "test:\n  coverage_min: .NaN\n")
    assert run_cli("test", "-C", str(tmp_path)) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {tmp_path / 'mlci.yaml'}:15: test.coverage_min is nan; {NON_FINITE_FIX}\n"
    )


def test_overflowing_numbers_in_integers_and_gates_are_refused(tmp_path: Path) -> None:
    huge = "9" * 400
    with pytest.raises(ConfigError) as caught:
        parse_config(with_value("deploy.ready_timeout", huge), "mlci.yaml")
    assert caught.value.message == f"mlci.yaml:15: deploy.ready_timeout is too large a number; {NON_FINITE_FIX}"
    (tmp_path / "mlci.yaml").write_text(MINIMAL_CONFIG.replace("roc_auc >= 0.9", "roc_auc >= 1e999"))
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.message == (
        f"{tmp_path / 'mlci.yaml'}:13: register.gates[0]: gate 'roc_auc >= 1e999': the threshold is inf; "
        f"{NON_FINITE_FIX}"
    )


TOO_DEEP = f"lists and mappings are nested more than {MAX_DEPTH} levels deep here; flatten the structure"


def nested(kind: str, depth: int) -> str:
    """A value nested `depth` levels deep, written on one line (flow) or as indented blocks."""
    if kind == "flow-list":
        return "[" * depth + "]" * depth
    if kind == "flow-map":
        return "{a: " * depth + "1" + "}" * depth
    return "\n" + "".join("  " * (i + 3) + "a:\n" for i in range(depth - 1)) + "  " * (depth + 2) + "b: 1"


@BOUNDED
@given(
    kind=st.sampled_from(["flow-list", "flow-map", "block-map"]),
    depth=st.one_of(st.integers(MAX_DEPTH - 2, 1200), st.sampled_from([MAX_DEPTH - 2, 500, 999, 1000, 10000])),
)
def test_deep_nesting_is_a_config_error_never_a_recursion_error(kind: str, depth: int) -> None:
    if kind == "block-map":
        depth = min(depth, 1100)  # indented blocks grow quadratically; 1100 is past every bound
    text = MINIMAL_CONFIG.replace(
        "  entrypoint: churn_model.train:train\n",
        f"  entrypoint: churn_model.train:train\n  params:\n    deep: {nested(kind, depth)}\n",
    )
    # The file, train and params are three levels already: `deep` may hold MAX_DEPTH - 3, and
    # the error names the line where the level past the bound starts.
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mlci.yaml")
    too_deep_line = 12 if kind != "block-map" else 12 + MAX_DEPTH - 2
    assert caught.value.message == f"mlci.yaml:{too_deep_line}: {TOO_DEEP}"


def test_nesting_up_to_the_bound_loads() -> None:
    depth = MAX_DEPTH - 3
    text = MINIMAL_CONFIG.replace(
        "  entrypoint: churn_model.train:train\n",
        f"  entrypoint: churn_model.train:train\n  params:\n    deep: {nested('flow-list', depth)}\n",
    )
    config, _ = parse_config(text, "mlci.yaml")
    value = config.train.params["deep"]
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


def billion_laughs(levels: int = 9) -> str:
    """Nine levels of ten aliases each: 10**9 strings once expanded, in nine short lines."""
    lines = ["    l0: &l0 lol"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "  params:\n" + "\n".join(lines) + "\n"


def test_a_yaml_bomb_in_train_params_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MINIMAL_CONFIG.replace(
        "  entrypoint: churn_model.train:train\n", "  entrypoint: churn_model.train:train\n" + billion_laughs()
    )
    (tmp_path / "mlci.yaml").write_text(text)
    started = time.perf_counter()
    assert run_cli("train", "-C", str(tmp_path)) == 2
    assert time.perf_counter() - started < 1.0
    assert capsys.readouterr().err == (
        f"mlci: error: {tmp_path / 'mlci.yaml'}:13: YAML alias '*l0' is not allowed (an alias can expand a few lines "
        "into billions of values); write the value out in full\n"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("    a: &x 1\n    b: *x\n", "mlci.yaml:13: YAML alias '*x' is not allowed"),
        ("    <<: {a: 1}\n", "mlci.yaml:12: '<<' merge keys are not supported in 'train.params'; write the keys out"),
        ("    [1, 2]: 3\n", "mlci.yaml:12: expected a single value here, not a list or mapping"),
        ("    a: {b: 1, b: 2}\n", "mlci.yaml:12: key 'train.params.a.b' appears twice; keep one"),
    ],
)
def test_params_hold_plain_values_only(params: str, message: str) -> None:
    text = MINIMAL_CONFIG.replace(
        "  entrypoint: churn_model.train:train\n", "  entrypoint: churn_model.train:train\n  params:\n" + params
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mlci.yaml")
    assert caught.value.message.startswith(message)


def test_mlci_yaml_that_is_not_utf8_names_line_and_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = MINIMAL_CONFIG.replace("  description", "").encode() + b"test:\n  paths: [t\xe9sts]\n"
    (tmp_path / "mlci.yaml").write_bytes(data)
    assert run_cli("lint", "-C", str(tmp_path)) == 2
    offset = data.index(b"\xe9")
    assert capsys.readouterr().err == (
        f"mlci: error: {tmp_path / 'mlci.yaml'}:15: is not UTF-8 text (byte {offset} is 0xe9); save it as UTF-8\n"
    )


CONTRACT_PROJECT = """\
schema: 1
project: {name: demo, package: demo}
data: {train: data.csv, holdout: data.csv, target: label}
train: {entrypoint: "demo.train:train"}
data_test: {contract: contract.yml}
"""
CONTRACT_HEAD = b"contract: 1\ndataset: {path: data.csv}\ncolumns:\n  - name: label\n    type: integer\n"


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (b'    description: "caf\xe9"\n', "6: is not UTF-8 text (byte {offset} is 0xe9); save it as UTF-8"),
        (
            b"    allowed: &labels [0, 1]\n  - name: other\n    type: integer\n    allowed: *labels\n",
            "9: YAML alias '*labels' is not allowed (an alias can expand a few lines into billions of values); "
            "write the value out in full",
        ),
        (b"    max: .inf\n", "6: columns[0].max is inf; " + NON_FINITE_FIX),
        (b"    allowed: " + b"[" * 100 + b"]" * 100 + b"\n", "6: " + TOO_DEEP),
    ],
)
def test_contracts_are_loaded_with_the_same_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: bytes, problem: str
) -> None:
    (tmp_path / "mlci.yaml").write_text(CONTRACT_PROJECT)
    (tmp_path / "contract.yml").write_bytes(CONTRACT_HEAD + tail)
    assert run_cli("data-test", "-C", str(tmp_path)) == 2
    problem = problem.replace("{offset}", str((CONTRACT_HEAD + tail).find(b"\xe9")))
    assert capsys.readouterr().err == f"mlci: error: {tmp_path / 'contract.yml'}:{problem}\n"
