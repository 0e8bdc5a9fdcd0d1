"""`mlci schema`: print the JSON Schema of mlci.yaml (for editors), or its key table (for docs)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlci.config import json_schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def _default(name: str, node: dict[str, Any], parent: dict[str, Any]) -> str:
    if name in parent.get("required", []):
        return "**required**"
    if node.get("type") == "object" and "properties" in node:
        return ""
    if "default" not in node or node["default"] is None:
        return "(see meaning)" if "default:" in node.get("description", "") else "none"
    return "`" + json.dumps(node["default"]) + "`"


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    kind = node.get("type", "")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def key_table() -> str:
    """The Markdown table of every mlci.yaml key, as docs/mlci-yaml.md embeds it."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(parent: dict[str, Any], prefix: str) -> None:
        for name, node in parent.get("properties", {}).items():
            meaning = node.get("description", "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | {_type(node)} | {_default(name, node, parent)} | {meaning} |")
            walk(node, f"{prefix}{name}.")

    walk(json_schema(), "")
    return "\n".join(rows) + "\n"


def main(args: argparse.Namespace) -> int:
    print(key_table() if getattr(args, "markdown", False) else render_schema(), end="")
    return 0
