"""Write tests/data/databricks-bundle.schema.json: the bundle JSON schema the tests check databricks.yml against.

The source is databricks/cli's `bundle/schema/jsonschema.json` (the Databricks License; test
data, never shipped in mlci's package). Kept: everything reachable from the top-level keys
(bundle, include, variables, targets, workspace, run_as, artifacts, ...) and the names of the
resource types under `resources:`; each resource's own fields are left to databricks-bundles'
typed classes (tests/test_databricks_bundle.py), so ~25 KB are vendored instead of ~900 KB.

Usage: python scripts/vendor_bundle_schema.py PATH/TO/jsonschema.json COMMIT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "data" / "databricks-bundle.schema.json"
RESOURCES = "#/$defs/github.com/databricks/cli/bundle/config.Resources"
SOURCE = "https://github.com/databricks/cli/blob/{commit}/bundle/schema/jsonschema.json"


def _lookup(schema: dict[str, Any], ref: str) -> Any:
    node: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for key, value in node.items() if key != "$ref"))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _put(defs: dict[str, Any], ref: str, value: Any) -> None:
    parts = ref.removeprefix("#/$defs/").split("/")
    node = defs
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def pruned(schema: dict[str, Any], commit: str) -> dict[str, Any]:
    resources = _lookup(schema, RESOURCES)
    # One object per resource type: its keys are checked here, its fields by the typed classes.
    stub = {"type": "object", "additionalProperties": {"type": "object"}}
    kept_resources = json.loads(json.dumps(resources))
    for variant in kept_resources.get("oneOf", [kept_resources]):
        for name in variant.get("properties", {}):
            variant["properties"][name] = {**stub, "description": variant["properties"][name].get("description", "")}
    seen: set[str] = set()
    todo = _refs(schema["properties"])
    defs: dict[str, Any] = {}
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        value = kept_resources if ref == RESOURCES else _lookup(schema, ref)
        _put(defs, ref, value)
        todo |= _refs(value) - seen
    return {
        "$comment": (
            f"Pruned by mlci's scripts/vendor_bundle_schema.py from {SOURCE.format(commit=commit)} "
            "(Databricks License): resources' own fields are checked by databricks-bundles. Test data only."
        ),
        **{key: value for key, value in schema.items() if key != "$defs"},
        "$defs": defs,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(pruned(schema, argv[1]), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
