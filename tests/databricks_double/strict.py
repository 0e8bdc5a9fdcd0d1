"""A strict request-body check driven by databricks-sdk's own API method signatures.

databricks-sdk (since 0.59) has no request classes: `JobsAPI.submit(run_name=..., tasks=[...])`
builds its body inline from keyword arguments whose annotations name the nested dataclasses
(`SubmitTask`, `JobEnvironment`, `EndpointCoreConfigInput`, ...). Their `from_dict` is lenient
(unknown keys dropped, scalars unchecked, unknown enum values become None), so this walks the
annotations instead: a body field the method does not take, a value of the wrong JSON type, an
enum value the SDK does not know, a required field left out: each is one problem line, e.g.
`$.tasks[0].run_if: 'SOMETIMES' not in RunIf`. A workspace answers such a body with a 400.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Any

from .server import Invalid

_NO_DEFAULT = (dataclasses.MISSING, inspect.Parameter.empty)


def _hints(obj: Any) -> dict[str, Any]:
    # The service module's globals as locals too: a field named `compute` must not shadow the
    # `compute` module its neighbours' annotations (`compute.Library`) name.
    ns = vars(sys.modules[obj.__module__])
    return typing.get_type_hints(obj, globalns=ns, localns=ns)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


def _check(tp: Any, value: Any, where: str, out: list[str]) -> None:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return
        if len(options) == 1:
            _check(options[0], value, where, out)
        return  # no SDK request field is a real union of several types
    if tp is Any or tp is object:
        return
    if origin in (list, typing.List):  # noqa: UP006 - the SDK annotates with typing.List
        if not isinstance(value, list):
            out.append(f"{where}: expected list, got {_kind(value)}")
            return
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            _check(item, v, f"{where}[{i}]", out)
        return
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            out.append(f"{where}: expected object, got {_kind(value)}")
            return
        _key, value_tp = typing.get_args(tp) or (str, Any)
        for k, v in value.items():
            _check(value_tp, v, f"{where}.{k}", out)
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not isinstance(value, str):
            out.append(f"{where}: expected str ({tp.__name__}), got {_kind(value)}")
        elif value not in {m.value for m in tp}:
            out.append(f"{where}: {value!r} not in {tp.__name__}")
        return
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            out.append(f"{where}: expected object ({tp.__name__}), got {_kind(value)}")
            return
        fields = {f.name: f for f in dataclasses.fields(tp)}
        required = {
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        _object(_hints(tp), required, value, where, tp.__name__, out)
        return
    if tp is bool:
        if not isinstance(value, bool):
            out.append(f"{where}: expected bool, got {_kind(value)}")
    elif tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{where}: expected int, got {_kind(value)}")
    elif tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            out.append(f"{where}: expected float, got {_kind(value)}")
    elif tp is str:
        if not isinstance(value, str):
            out.append(f"{where}: expected str, got {_kind(value)}")
    elif tp in (dict, list) and not isinstance(value, tp):
        out.append(f"{where}: expected {_kind(tp())}, got {_kind(value)}")


def _object(
    hints: dict[str, Any], required: set[str], value: dict[str, Any], where: str, owner: str, out: list[str]
) -> None:
    for key, v in value.items():
        if key not in hints:
            out.append(f"{where}.{key}: unknown field of {owner}")
        else:
            _check(hints[key], v, f"{where}.{key}", out)
    for name in sorted(required - set(value)):
        out.append(f"{where}.{name}: required by {owner}")


def problems(
    method: Callable[..., Any],
    body: Any,
    *,
    path_params: Iterable[str] = (),
    query_params: Iterable[str] = (),
) -> list[str]:
    """What a workspace would refuse in `body`, the JSON the SDK's `method` (e.g.
    `JobsAPI.submit`) sends; path and query parameters are not part of the body."""
    owner = method.__qualname__
    if not isinstance(body, dict):
        return [f"$: expected object ({owner}), got {_kind(body)}"]
    skip = {"self", *path_params, *query_params}
    hints = _hints(method)
    parameters = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    body_hints = {p.name: hints.get(p.name, Any) for p in parameters}
    required = {p.name for p in parameters if p.default in _NO_DEFAULT}
    out: list[str] = []
    _object(body_hints, required, body, "$", owner, out)
    return out


def require_valid(
    method: Callable[..., Any],
    body: Any,
    path_params: Iterable[str] = (),
    query_params: Iterable[str] = (),
) -> dict[str, Any]:
    """`body` if a workspace would take it, else `Invalid` (a 400) naming every problem."""
    found = problems(method, body, path_params=path_params, query_params=query_params)
    if found:
        raise Invalid("; ".join(found))
    assert isinstance(body, dict)
    return body
