"""`mlci schema`: print the JSON Schema of mlci.yaml (for editors and docs)."""

from __future__ import annotations

import argparse
import json

from mlci.config import json_schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def main(args: argparse.Namespace) -> int:
    print(render_schema(), end="")
    return 0
