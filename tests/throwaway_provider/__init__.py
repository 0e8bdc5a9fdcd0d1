"""A throwaway CI provider: the proof that a provider is one package plus one registry line.

It renders one file per pipeline, `.throwaway/<pipeline id>.json`, holding the pipeline model
itself, and reads it back. tests/test_provider_contract.py registers it with one line
(`monkeypatch.setitem(providers.NAMES, "throwaway", "throwaway_provider")`) and runs the whole
conformance kit, `mlci new` and `mlci upgrade` on it unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlci.pipeline import Pipeline, as_rendered
from mlci.providers.base import RenderContext
from throwaway_provider.runtime import RUNTIME, ThrowawayRuntime


def encode(value: Any) -> Any:
    """The model as JSON, each dataclass and tuple tagged so it reads back as itself."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": f"{type(value).__module__}:{type(value).__qualname__}", "fields": fields}
    if isinstance(value, tuple):
        return {"tuple": [encode(item) for item in value]}
    if isinstance(value, frozenset):
        return {"frozenset": sorted(encode(item) for item in value)}
    if isinstance(value, Mapping):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"the throwaway provider cannot write {value!r}")


def decode(value: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        module, _, name = value["type"].partition(":")
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
        return cls(**{key: decode(item) for key, item in value["fields"].items()})
    if isinstance(value, dict) and "tuple" in value:
        return tuple(decode(item) for item in value["tuple"])
    if isinstance(value, dict) and "frozenset" in value:
        return frozenset(decode(item) for item in value["frozenset"])
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value["dict"]}
    return value


class Throwaway:
    name = "throwaway"
    managed: tuple[str, ...] = (".throwaway/",)
    runtime: ThrowawayRuntime = RUNTIME

    def shipped_templates(self) -> Path:
        return Path(__file__).parent

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        return {
            # As a CI file shows a pipeline (credentials merged per job: pipeline.as_rendered).
            f".throwaway/{p.id}.json": (
                json.dumps(encode(as_rendered(p, self.name)), indent=1, sort_keys=True) + "\n"
            ).encode()
            for p in pipelines
        }

    def parse_back(self, files: dict[str, bytes]) -> tuple[Pipeline, ...]:
        pipelines = [decode(json.loads(data)) for path, data in files.items() if path.startswith(".throwaway/")]
        return tuple(pipelines)


PROVIDER = Throwaway()
