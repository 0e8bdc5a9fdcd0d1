"""`mlci data profile` and `mlci data schema`: tools around the data contract."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlci.stages._result import load_project_for


def profile_main(args: argparse.Namespace) -> int:
    from mlci.contracts import drift
    from mlci.contracts.profile import build_profile
    from mlci.errors import ConfigError
    from mlci.stages.data_test import contract_for

    project = load_project_for(args)
    contract, relative = contract_for(project, args.contract)
    if contract is None:
        raise ConfigError(
            str(project.root / relative),
            None,
            "data contract not found; write one (see docs/data-contracts.md) or pass --contract",
        )
    engine = args.engine or project.config.data_test.engine
    profile = build_profile(contract, engine, args.source)
    if args.output is not None:
        target = Path(args.output).resolve()
    else:
        target = contract.resolve(
            contract.spec.drift.reference if contract.spec.drift else "data/reference_profile.json"
        )
    drift.write_profile(profile, target)
    kinds = [c.kind for c in profile.columns.values()]
    print(
        f"wrote {target}: {profile.rows} rows, {kinds.count('numeric')} numeric and "
        f"{kinds.count('categorical')} categorical columns profiled on {engine}"
    )
    return 0


def schema_main(args: argparse.Namespace) -> int:
    from mlci.contracts.format import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
