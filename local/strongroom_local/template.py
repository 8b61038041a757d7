"""Read template.yaml and resolve its intrinsic functions for the local stack and the tests.

Tests and `strongroom local` build their emulated resources from the template itself, so the
template and what we test cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from strongroom_local.exceptions import InvalidTemplate

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "FindInMap": "Fn::FindInMap",
    "Base64": "Fn::Base64",
    "ImportValue": "Fn::ImportValue",
    "GetAZs": "Fn::GetAZs",
}


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation's short tags into their long form."""


def _tag_constructor(long_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if long_name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            raise yaml.constructor.ConstructorError(None, None, "unexpected node", node.start_mark)
        return {long_name: value}

    return construct


for _short, _long in _SHORT_TAGS.items():
    _TemplateLoader.add_constructor(f"!{_short}", _tag_constructor(_long))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as a fresh dict (callers may change it); parsed once per file version."""
    stat = path.stat()
    return copy.deepcopy(_parse_template(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse_template(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a template")
    return document


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """Logical id -> resource, for every resource of `resource_type`, in template order."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def scalar_text(value: Any, where: str = "value") -> str:
    """A scalar as CloudFormation renders it in a string: booleans as `true`/`false`.

    A list or a map has no such rendering: CloudFormation refuses one where a string is needed.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidTemplate(f"{where}: a string is needed, not {type(value).__name__} {value!r}")


# Parameter types whose value is a list (of strings, as every parameter value is).
_LIST_PARAMETER_TYPES = ("CommaDelimitedList", "List<Number>")


def _parameter_value(name: str, spec: Mapping[str, Any], value: Any) -> str | list[str]:
    """A parameter's value as CloudFormation holds it: a string, or a list of strings, whether
    it came from the template's (YAML-typed) Default or from the command line."""
    where = f"parameter {name}"
    if spec.get("Type") in _LIST_PARAMETER_TYPES:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise InvalidTemplate(f"{where}: a list is needed")
        return [scalar_text(item, where).strip() for item in items]
    return scalar_text(value, where)


@dataclass
class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::If and friends against known values.

    `refs` maps a logical id or parameter to what `Ref` returns; `attributes` maps
    (logical id, attribute) to what `Fn::GetAtt` returns.
    """

    template: Mapping[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def for_template(
        cls,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "strongroom-local",
    ) -> Resolver:
        resolver = cls(template)
        resolver.refs.update(
            {
                "AWS::Region": region,
                "AWS::AccountId": account_id,
                "AWS::Partition": "aws",
                "AWS::StackName": stack_name,
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NoValue": None,
            }
        )
        given = dict(parameters or {})
        for name, spec in template.get("Parameters", {}).items():
            if name in given:
                value = given[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise KeyError(f"template parameter {name} has no default and no value")
            resolver.refs[name] = _parameter_value(name, spec, value)
        return resolver

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(arg)
        return {k: r for k, v in value.items() if (r := self.resolve(v)) is not None}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: self._comparable(arg[0]) == self._comparable(arg[1]),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(a) for a in arg),
            "Fn::Or": lambda arg: any(self.resolve(a) for a in arg),
            "Fn::Join": lambda arg: arg[0].join(str(x) for x in self.resolve(arg[1])),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(arg[0]),
            "Condition": self.condition,
        }

    def _comparable(self, operand: Any) -> str | list[str]:
        """An Fn::Equals operand as CloudFormation compares it: as text (`90` equals "90")."""
        value = self.resolve(operand)
        if isinstance(value, list):
            return [scalar_text(item, "Fn::Equals") for item in value]
        return scalar_text(value, "Fn::Equals")

    def _ref(self, name: str) -> Any:
        if name not in self.refs:
            raise KeyError(f"Ref {name} is not known (yet)")
        return self.refs[name]

    def _get_att(self, arg: list[str]) -> Any:
        logical_id, attribute = arg[0], arg[1]
        if (logical_id, attribute) not in self.attributes:
            raise KeyError(f"GetAtt {logical_id}.{attribute} is not known (yet)")
        return self.attributes[(logical_id, attribute)]

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, local = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, local = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att([logical_id, attribute]))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)
