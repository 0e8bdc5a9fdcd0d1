"""An offline expander for the Azure Pipelines template constructs a generator like mlci emits.

No offline tool expands Azure templates (Microsoft's language service checks only the schema), so
this one does, strictly: `- template: path` (and `path@alias` for a `resources.repositories` alias
mapped to a local folder) in stages, jobs, steps and variables, and `extends: template:`; each
template's declared `parameters:` (string number boolean object step stepList job jobList
deployment deploymentList stage stageList, with default and values) checked against what is
passed (unknown name, wrong type, value outside `values`, missing required: each an error);
`${{ parameters.x }}` and `${{ variables.x }}` as a whole value (typed) or inside a string (as
text); `${{ if }}` / `${{ elseif }}` / `${{ else }}` and `${{ each x in ... }}` keys in mappings
and sequences; the functions of expressions.py. YAML scalars stay strings, as Azure reads them;
the declared parameter types give them their types. Runtime `$[ ]`, `$(macro)` and
`condition:` text is left for the runner.

Does not model: the Azure service (template expansion limits, `extends` security checks,
required-template approvals, variable groups, `${{ insert }}`, runtime parameters' UI), and
referencing an undeclared parameter is an error here although Azure yields an empty value.
Every failure raises AzurePipelineError with one line: the template chain, the problem, the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .expressions import AzurePipelineError, ExpressionError, StrictMapping, evaluate, to_bool, to_num, to_str


class AzureYamlLoader(yaml.SafeLoader):
    """YAML as Azure reads it: every scalar a string (only an empty value or ~/null is Null), and
    a key written twice is an error instead of the last one silently winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


AzureYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

STEP_KEYS = {"script", "bash", "pwsh", "powershell", "task", "checkout", "download", "publish", "template"}
SHAPES = {  # parameter type -> (is a list, keys one of which each item must have)
    "step": (False, STEP_KEYS),
    "stepList": (True, STEP_KEYS),
    "job": (False, {"job", "deployment", "template"}),
    "jobList": (True, {"job", "deployment", "template"}),
    "deployment": (False, {"deployment", "template"}),
    "deploymentList": (True, {"deployment", "template"}),
    "stage": (False, {"stage", "template"}),
    "stageList": (True, {"stage", "template"}),
}
TYPES = {"string", "number", "boolean", "object", *SHAPES}
CONTENT_KEYS = ("stages", "jobs", "steps", "variables")


@dataclass(frozen=True)
class Source:
    """A YAML file: `path` inside the folder `root`, which is the pipeline's own repository
    (alias None) or a `resources.repositories` alias mapped to a local folder."""

    root: Path
    path: str
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.path}@{self.alias}" if self.alias else self.path


class Expander:
    def __init__(self, root: Path, repositories: dict[str, Path], variables: dict[str, Any]) -> None:
        self.root = root
        self.repositories = repositories
        self.variables = variables
        self.declared_aliases: set[str] = set()

    # -- errors and files ------------------------------------------------------------------
    @staticmethod
    def fail(chain: list[Source], problem: str, fix: str) -> AzurePipelineError:
        return AzurePipelineError(f"{' -> '.join(map(str, chain))}: {problem}; {fix}")

    def load(self, source: Source, chain: list[Source]) -> Any:
        file = source.root / source.path
        if not file.is_file():
            where = f"included from {chain[-1]}" if chain else "the pipeline file"
            raise self.fail(
                [*chain, source], f"template file {file} does not exist ({where})", "fix the template: path"
            )
        try:
            return yaml.load(file.read_text(encoding="utf-8"), Loader=AzureYamlLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            problem = getattr(error, "problem", None) or error
            raise self.fail([*chain, source], f"invalid YAML{line}: {problem}", "fix the YAML syntax") from None

    def resolve(self, reference: str, including: Source, chain: list[Source]) -> Source:
        path, _, alias = reference.partition("@")
        if alias and alias != "self":
            if alias not in self.declared_aliases:
                raise self.fail(
                    chain,
                    f"template '{reference}' names repository '{alias}', which resources.repositories does not declare",
                    f"declare '{alias}' there",
                )
            if alias not in self.repositories:
                raise self.fail(
                    chain, f"repository '{alias}' has no local folder", f"pass repositories={{'{alias}': <folder>}}"
                )
            return Source(self.repositories[alias], path.lstrip("/"), alias)
        if alias == "self":
            return Source(self.root, path.lstrip("/"))
        if path.startswith("/"):
            return Source(including.root, path.lstrip("/"), including.alias)
        parent = Path(including.path).parent
        return Source(including.root, (parent / path).as_posix(), including.alias)

    # -- parameters ------------------------------------------------------------------------
    def bind(self, declared: Any, passed: Any, chain: list[Source]) -> StrictMapping:
        """Check what is passed against the declared parameters and apply the defaults."""
        if isinstance(declared, dict):  # the old untyped form: name -> default
            declared = [{"name": name, "type": "object", "default": value} for name, value in declared.items()]
        passed = passed or {}
        if not isinstance(passed, dict):
            raise self.fail(chain, "parameters: must be a mapping of name: value", "write name: value pairs")
        names = [spec.get("name") for spec in declared or []]
        for name in passed:
            if name not in names:
                raise self.fail(
                    chain,
                    f"unknown parameter '{name}' (declared: {', '.join(map(str, names)) or 'none'})",
                    "fix its name or declare it in the template's parameters:",
                )
        bound = StrictMapping()
        for spec in declared or []:
            name, kind = spec.get("name"), spec.get("type", "string")
            if kind not in TYPES:
                raise self.fail(chain, f"parameter '{name}' has unknown type '{kind}'", f"use one of {sorted(TYPES)}")
            if name in passed:
                value = passed[name]
            elif "default" in spec:
                value = spec["default"]
            else:
                raise self.fail(
                    chain, f"parameter '{name}' is required and was not passed", f"pass {name}: or give it a default"
                )
            bound[name] = self.coerce(name, kind, value, spec.get("values"), chain)
        return bound

    def coerce(self, name: str, kind: str, value: Any, values: Any, chain: list[Source]) -> Any:
        def wrong(expected: str) -> AzurePipelineError:
            return self.fail(chain, f"parameter '{name}' expects {expected}, got {value!r}", f"pass {expected}")

        if kind == "string":
            if isinstance(value, (dict, list)):
                raise wrong("a string")
            value = to_str(value)
        elif kind == "number":
            if isinstance(value, bool) or to_num(value) != to_num(value):  # NaN: not a number
                raise wrong("a number")
            value = int(to_num(value)) if to_num(value).is_integer() else to_num(value)
        elif kind == "boolean":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif not isinstance(value, bool):
                raise wrong("a boolean (true or false)")
        elif kind in SHAPES:
            is_list, keys = SHAPES[kind]
            items = value if is_list else [value]
            if not isinstance(items, list) or not all(isinstance(i, dict) and keys & set(i) for i in items):
                raise wrong(f"a {kind} (each item a mapping with one of {sorted(keys)})")
        if values is not None and not any(to_str(value) == to_str(allowed) for allowed in values):
            allowed = ", ".join(f"'{to_str(v)}'" for v in values)
            raise self.fail(
                chain,
                f"parameter '{name}' has value '{to_str(value)}', not one of {allowed}",
                "pass one of the allowed values",
            )
        return value

    # -- expressions -----------------------------------------------------------------------
    def evaluate(self, text: str, scope: dict[str, Any], chain: list[Source]) -> Any:
        try:
            return evaluate(text, scope)
        except ExpressionError as error:
            raise self.fail(chain, str(error), "fix the expression") from None

    def interpolate(self, text: str, scope: dict[str, Any], chain: list[Source]) -> Any:
        """A string with `${{ }}`: the typed value if it is one expression, else the text."""
        parts: list[Any] = []
        rest = text
        while "${{" in rest:
            before, _, after = rest.partition("${{")
            end = find_close(after)
            if end < 0:
                raise self.fail(chain, f"'${{{{' without '}}}}' in {text!r}", "close the expression")
            parts += [before, self.evaluate(after[:end], scope, chain)]
            rest = after[end + 2 :]
        parts.append(rest)
        if len(parts) == 3 and parts[0].strip() == "" and parts[2].strip() == "":
            return parts[1]
        return "".join(p if i % 2 == 0 else to_str(p) for i, p in enumerate(parts))

    # -- the walk --------------------------------------------------------------------------
    def walk(self, node: Any, scope: dict[str, Any], source: Source, chain: list[Source], key: str = "") -> Any:
        if isinstance(node, str):
            return self.interpolate(node, scope, chain) if "${{" in node else node
        if isinstance(node, list):
            return self.walk_list(node, scope, source, chain, key)
        if isinstance(node, dict):
            return self.walk_mapping(node, scope, source, chain)
        return node

    def directive(self, key: Any, chain: list[Source]) -> tuple[str, str] | None:
        """('if', cond) / ('elseif', cond) / ('else', '') / ('each', 'x in expr') for a directive key."""
        if not isinstance(key, str) or not key.strip().startswith("${{") or not key.strip().endswith("}}"):
            return None
        body = key.strip()[3:-2].strip()
        word, _, rest = body.partition(" ")
        if word in ("if", "elseif", "each") or body == "else":
            if word == "each" and " in " not in f" {rest} ":
                raise self.fail(chain, f"'{key}' must read '${{{{ each x in <collection> }}}}'", "add 'in'")
            return word, rest.strip()
        return None

    def branches(
        self, items: list[tuple[Any, Any]], scope: dict[str, Any], chain: list[Source]
    ) -> list[tuple[Any, Any, dict[str, Any]]]:
        """Resolve if/elseif/else/each keys into the (key, value, scope) entries they yield."""
        out: list[tuple[Any, Any, dict[str, Any]]] = []
        taken: bool | None = None  # None: no if chain open
        for key, value in items:
            found = self.directive(key, chain)
            if found is None:
                out.append((key, value, scope))
                taken = None
                continue
            word, rest = found
            if word in ("elseif", "else") and taken is None:
                raise self.fail(chain, f"'{key}' does not follow an ${{{{ if }}}}", "put it right after the if")
            if word == "if" or (word == "elseif" and not taken):
                hit = to_bool(self.evaluate(rest, scope, chain))
                if hit:
                    out.append((None, value, scope))
                taken = hit or bool(taken and word == "elseif")
            elif word == "else":
                if not taken:
                    out.append((None, value, scope))
                taken = None
            elif word == "each":
                variable, _, collection = rest.partition(" in ")
                items_of = self.evaluate(collection, scope, chain)
                if isinstance(items_of, dict):
                    items_of = [{"key": k, "value": v} for k, v in items_of.items()]
                for item in items_of or []:
                    out.append((None, value, {**scope, variable.strip(): item}))
                taken = None
        return out

    def walk_mapping(self, node: dict[Any, Any], scope: dict[str, Any], source: Source, chain: list[Source]) -> Any:
        result: dict[Any, Any] = {}
        for key, value, inner in self.branches(list(node.items()), scope, chain):
            if key is None:  # a directive's body merges into this mapping
                merged = self.walk(value, inner, source, chain)
                if merged is not None and not isinstance(merged, dict):
                    raise self.fail(
                        chain, "a ${{ if/each }} inside a mapping must hold a mapping", "indent its keys under it"
                    )
                result.update(merged or {})
            else:
                name = self.interpolate(key, inner, chain) if isinstance(key, str) and "${{" in key else key
                result[name] = self.walk(value, inner, source, chain, key=str(name))
        return result

    def walk_list(self, node: list[Any], scope: dict[str, Any], source: Source, chain: list[Source], key: str) -> Any:
        result: list[Any] = []
        for item in node:
            if isinstance(item, dict) and len(item) == 1 and self.directive(next(iter(item)), chain):
                for _, value, inner in self.branches(list(item.items()), scope, chain):
                    body = self.walk(value, inner, source, chain, key)
                    result += body if isinstance(body, list) else [body] if body is not None else []
            elif isinstance(item, dict) and "template" in item and key in CONTENT_KEYS:
                result += self.include(item, key, scope, source, chain)
            elif isinstance(item, str) and "${{" in item:
                value = self.interpolate(item, scope, chain)
                result += value if isinstance(value, list) else [value]  # a stepList spliced in place
            else:
                result.append(self.walk(item, scope, source, chain, key))
        return result

    def include(
        self, item: dict[str, Any], key: str, scope: dict[str, Any], source: Source, chain: list[Source]
    ) -> Any:
        extra = sorted(set(item) - {"template", "parameters"})
        if extra:
            raise self.fail(
                chain, f"a template reference has unexpected key(s) {extra}", "keep only template: and parameters:"
            )
        passed = self.walk(item.get("parameters") or {}, scope, source, chain)
        reference = self.walk(item["template"], scope, source, chain)
        target = self.resolve(str(reference), source, chain)
        if target in chain:
            raise self.fail([*chain, target], "the template includes itself", "break the cycle")
        document = self.load(target, chain) or {}
        inner_chain = [*chain, target]
        content = [k for k in CONTENT_KEYS if k in document]
        if content != [key]:
            raise self.fail(
                inner_chain,
                f"a template used in {key}: must hold {key}:, this one holds "
                f"{', '.join(content) or 'none of stages/jobs/steps/variables'}",
                f"include it under {content}",
            )
        bound = self.bind(document.get("parameters"), passed, inner_chain)
        expanded = self.walk(document[key], {**self.base_scope(), "parameters": bound}, target, inner_chain, key)
        return expanded or []

    def extend(self, pipeline: dict[str, Any], source: Source, chain: list[Source]) -> dict[str, Any]:
        spec = pipeline.pop("extends")
        target = self.resolve(str(spec["template"]), source, chain)
        document = self.load(target, chain) or {}
        bound = self.bind(document.pop("parameters", None), spec.get("parameters"), [*chain, target])
        body = self.walk(document, {**self.base_scope(), "parameters": bound}, target, [*chain, target])
        return {**pipeline, **body}

    def base_scope(self) -> dict[str, Any]:
        return {"variables": self.variables}


def find_close(text: str) -> int:
    """Index of the `}}` closing an expression, skipping quoted strings; -1 if there is none."""
    quoted = False
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and text.startswith("}}", index):
            return index
    return -1


def static_variables(block: Any) -> dict[str, Any]:
    """Compile-time variables of a `variables:` block (mapping, or list of name/value)."""
    if isinstance(block, dict):
        return {str(k): v for k, v in block.items() if not str(k).startswith("${{")}
    return {str(v["name"]): v.get("value") for v in block or [] if isinstance(v, dict) and "name" in v}


def expand(
    path: Path | str,
    repositories: dict[str, Path] | None = None,
    variables: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pipeline at `path` with every template resolved and every `${{ }}` evaluated.

    `repositories` maps `resources.repositories` aliases to local folders; `variables` are the
    compile-time predefined variables (Build.SourceBranch, Build.Reason ...); `parameters` are
    the run's values for the pipeline's own (runtime) parameters.
    """
    file = Path(path)
    source = Source(file.parent, file.name)
    expander = Expander(file.parent, {k: Path(v) for k, v in (repositories or {}).items()}, {})
    document = expander.load(source, [])
    if not isinstance(document, dict):
        raise expander.fail([source], "the pipeline must be a mapping", "write stages:, jobs: or steps:")
    declared = (document.get("resources") or {}).get("repositories") or []
    expander.declared_aliases = {str(r.get("repository")) for r in declared if isinstance(r, dict)}
    expander.variables = {**(variables or {}), **static_variables(document.get("variables"))}
    bound = expander.bind(document.pop("parameters", None), parameters, [source])
    expanded = expander.walk(document, {"variables": expander.variables, "parameters": bound}, source, [source])
    if "extends" in expanded:
        expanded = expander.extend(expanded, source, [source])
    assert isinstance(expanded, dict)
    return expanded
