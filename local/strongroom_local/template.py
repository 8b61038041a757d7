"""Read template.yaml and resolve its intrinsic functions for the local stack and the tests.

Tests and `strongroom local` build their emulated resources from the template itself, so the
template and what we test cannot drift apart. Parameters, Conditions and intrinsic functions
are read as CloudFormation reads them: what CloudFormation would refuse raises InvalidTemplate,
what this module cannot resolve faithfully raises UnsupportedTemplate, never a guess.
"""

from __future__ import annotations

import base64
import copy
import decimal
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from strongroom.plain_urls import is_loopback_http_url
from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate

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


def resources_of_type(
    template: Mapping[str, Any], resource_type: str, resolver: Resolver | None = None
) -> dict[str, Any]:
    """Logical id -> resource, for every resource of `resource_type` the stack has, in template
    order.

    A resource whose Condition is false does not exist: CloudFormation never creates it. Which
    those are depends on the parameters, so without a resolver a resource with a Condition is
    refused rather than taken as created whatever the parameters.
    """
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != resource_type:
            continue
        if resolver is not None:
            if not resolver.exists(logical_id):
                continue
        elif "Condition" in resource:
            raise UnsupportedTemplate(
                f"{logical_id}: a {resource_type} with a Condition is not emulated here "
                "(its Condition is read only where the stack's parameters are known)"
            )
        found[logical_id] = resource
    return found


def cloudformation_bool(value: Any, what: str) -> bool:
    """A boolean property as CloudFormation reads it: a bool, or "true"/"false" (a parameter's
    value is a string, and "false" is false)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UnsupportedTemplate(f"{what}: not a boolean: {value!r}")


def cloudformation_int(value: Any, what: str) -> int:
    """An integer property as CloudFormation reads it: an int, or its digits as text (a Number
    parameter's value). A boolean, a fraction or other text is refused at deploy."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    raise InvalidTemplate(f"{what}: not an integer: {value!r}")


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
# AWS-specific and SSM parameter types name things in an account: nothing local to check.
_PARAMETER_TYPES = ("String", "Number", *_LIST_PARAMETER_TYPES)
_PARAMETER_KEYS = {
    "Type",
    "Default",
    "Description",
    "AllowedValues",
    "AllowedPattern",
    "ConstraintDescription",
    "MinLength",
    "MaxLength",
    "MinValue",
    "MaxValue",
    "NoEcho",
}


def _parameter_value(name: str, spec: Mapping[str, Any], value: Any) -> str | list[str]:
    """A parameter's value as CloudFormation holds it: a string, or a list of strings, whether
    it came from the template's (YAML-typed) Default or from the command line."""
    where = f"parameter {name}"
    try:
        if spec.get("Type") in _LIST_PARAMETER_TYPES:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list):
                raise InvalidTemplate(f"{where}: a list is needed")
            return [scalar_text(item, where).strip() for item in items]
        return scalar_text(value, where)
    except InvalidTemplate:
        if not _no_echo(name, spec):
            raise
        # Without the message that shows it, nor that message in the chain.
        raise InvalidTemplate(f"{where}: the value is not a string (nor a list of them)") from None


def _no_echo(name: str, spec: Mapping[str, Any]) -> bool:
    return cloudformation_bool(spec.get("NoEcho", False), f"parameter {name}: NoEcho")


# What a Number parameter takes: an integer or a float (no spaces, no NaN, no underscores).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(value: Any) -> decimal.Decimal | None:
    text = scalar_text(value)
    return decimal.Decimal(text) if _NUMBER.fullmatch(text) else None


def _loopback_as_https(text: str) -> str:
    """A loopback `http://` URL as `https://`: the local stack serves plain HTTP on loopback
    only, so a parameter that must be an https URL is given the local one (OAuthRedirectUri)."""
    return "https://" + text[len("http://") :] if is_loopback_http_url(text) else text


def check_parameter(name: str, spec: Mapping[str, Any], value: str | list[str]) -> None:
    """Refuse a value CloudFormation would refuse at deploy: its Type and constraints.

    The message names the parameter, and the value unless the parameter is NoEcho.
    """
    unknown = sorted(set(spec) - _PARAMETER_KEYS)
    if unknown:
        raise InvalidTemplate(f"parameter {name}: unknown {', '.join(unknown)}")
    kind = spec.get("Type")
    if kind not in _PARAMETER_TYPES:
        raise UnsupportedTemplate(
            f"parameter {name}: type {kind!r} is not emulated ({', '.join(_PARAMETER_TYPES)} are)"
        )
    reason = _broken_constraint(name, spec, value)
    if reason is not None:
        shown = "the value" if _no_echo(name, spec) else repr(value)
        explained = spec.get("ConstraintDescription")
        raise InvalidTemplate(
            f"parameter {name}: {shown} {reason}" + (f" ({explained})" if explained else "")
        )


def _broken_constraint(name: str, spec: Mapping[str, Any], value: str | list[str]) -> str | None:
    """What `value` breaks, or None; a list type's constraints hold for each of its items."""
    kind = spec["Type"]
    items = value if isinstance(value, list) else [value]
    if kind in ("Number", "List<Number>"):
        broken = [reason for item in items if (reason := _broken_number(name, spec, item))]
        if broken:
            return broken[0]
    if kind == "String":
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            return f"is shorter than MinLength {spec['MinLength']}"
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            return f"is longer than MaxLength {spec['MaxLength']}"
    if "AllowedValues" in spec:
        allowed = [scalar_text(v) for v in spec["AllowedValues"]]
        if any(item not in allowed for item in items):
            return f"is not one of AllowedValues {allowed}"
    if "AllowedPattern" in spec and kind in ("String", "CommaDelimitedList"):
        pattern = str(spec["AllowedPattern"])
        for item in items:
            if not (re.fullmatch(pattern, item) or re.fullmatch(pattern, _loopback_as_https(item))):
                return f"does not match AllowedPattern {pattern}"
    return None


def _broken_number(name: str, spec: Mapping[str, Any], text: str) -> str | None:
    number = _number(text)
    if number is None:
        return "is not a number"
    if "MinValue" in spec and number < _bound(name, spec, "MinValue"):
        return f"is less than MinValue {spec['MinValue']}"
    if "MaxValue" in spec and number > _bound(name, spec, "MaxValue"):
        return f"is more than MaxValue {spec['MaxValue']}"
    return None


def _bound(name: str, spec: Mapping[str, Any], key: str) -> decimal.Decimal:
    number = _number(spec[key])
    if number is None:
        raise InvalidTemplate(f"parameter {name}: {key} is not a number")
    return number


# CloudFormation's pseudo parameters that the local stack gives no value (Resolver.for_template
# gives the others).
_PSEUDO_PARAMETERS = ("AWS::NotificationARNs", "AWS::StackId")


def _arguments(function: str, arg: Any, least: int, most: int | None = None) -> list[Any]:
    """An intrinsic function's list of arguments, as many as it takes (CloudFormation refuses
    any other shape; indexed as it came, a map gave a KeyError and a string its letters)."""
    most = least if most is None else most
    if not isinstance(arg, list) or not least <= len(arg) <= most:
        count = str(least) if least == most else f"{least} to {most}"
        plural = "" if most == 1 else "s"
        raise InvalidTemplate(f"{function} takes a list of {count} argument{plural}, not {arg!r}")
    return arg


@dataclass
class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::If and friends against known values.

    `refs` maps a logical id or parameter to what `Ref` returns; `attributes` maps
    (logical id, attribute) to what `Fn::GetAtt` returns.
    """

    template: Mapping[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    # The conditions being evaluated, outermost first: one met again is a cycle.
    _evaluating: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def for_template(
        cls,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "strongroom-local",
    ) -> Resolver:
        """A resolver of `template` for a stack given `parameters`, as CloudFormation is given
        them: a name the template does not declare is refused. `defaults` are the local
        stack's own values for parameters a template may or may not declare
        (provision.LOCAL_PARAMETERS): each is used where the template declares it and
        `parameters` does not give it."""
        declared = template.get("Parameters", {})
        undeclared = sorted(set(parameters or {}) - set(declared))
        if undeclared:
            raise InvalidTemplate(
                f"Parameters: [{', '.join(undeclared)}] do not exist in the template"
            )
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
        given = {name: v for name, v in (defaults or {}).items() if name in declared}
        given.update(parameters or {})
        unset = [
            name for name, spec in declared.items() if name not in given and "Default" not in spec
        ]
        if unset:
            raise InvalidTemplate(f"Parameters: [{', '.join(unset)}] must have values")
        for name, spec in declared.items():
            value = given[name] if name in given else spec["Default"]
            resolver.refs[name] = _parameter_value(name, spec, value)
            check_parameter(name, spec, resolver.refs[name])
        return resolver

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if not isinstance(name, str) or name not in conditions:
            raise InvalidTemplate(f"condition {name!r} is not in the template's Conditions")
        if name in self._evaluating:
            cycle = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
            raise InvalidTemplate(f"conditions refer to each other in a cycle: {cycle}")
        self._evaluating.append(name)
        try:
            return self._boolean(conditions[name], f"condition {name}")
        finally:
            self._evaluating.pop()

    def _boolean(self, value: Any, where: str) -> bool:
        """A condition's value: what Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition gives,
        never a string or a map read as true."""
        result = self.resolve(value)
        if not isinstance(result, bool):
            raise InvalidTemplate(f"{where}: a condition is needed, not {result!r}")
        return result

    def exists(self, logical_id: str) -> bool:
        """Whether the stack has the resource: the template has it and its Condition holds."""
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            return False
        return "Condition" not in resource or self.condition(resource["Condition"])

    def _refuse_absent(self, reference: str, logical_id: str) -> None:
        """CloudFormation refuses a reference to a resource whose Condition is false, unless
        an Fn::If leaves it out (only the branch an Fn::If takes is resolved)."""
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is not None and not self.exists(logical_id):
            raise InvalidTemplate(
                f"{reference}: {logical_id} does not exist (its Condition "
                f"{resource['Condition']} is false)"
            )

    def refuse_undefined(self, reference: str, name: str, *, resources_only: bool = False) -> None:
        """CloudFormation refuses a reference to a name the template neither declares nor has
        SAM generate (with `resources_only`, as DependsOn: a parameter neither); one it has
        that is not known (yet) is for the caller to explain."""
        if name.startswith("AWS::") and not resources_only:
            if name in _PSEUDO_PARAMETERS:
                raise UnsupportedTemplate(f"{reference}: the local stack gives {name} no value")
            raise InvalidTemplate(f"{reference}: CloudFormation has no pseudo parameter {name}")
        names = set(self.template.get("Resources", {}))
        if not resources_only:
            names |= set(self.template.get("Parameters", {}))
        if name not in names and not self._sam_may_generate(name):
            kind = "resource" if resources_only else "parameter or resource"
            raise InvalidTemplate(f"{reference}: the template has no {kind} {name}")

    def _sam_may_generate(self, name: str) -> bool:
        """Whether SAM may make a resource so named: its implicit APIs (ServerlessHttpApi...)
        and those it derives from a serverless resource's id (<Function>Role...)."""
        transform = self.template.get("Transform", [])
        transforms = [transform] if isinstance(transform, str) else transform
        if not any(str(t).startswith("AWS::Serverless") for t in transforms):
            return False
        serverless = [
            logical_id
            for logical_id, resource in self.template.get("Resources", {}).items()
            if str(resource.get("Type", "")).startswith("AWS::Serverless::")
        ]
        return any(name.startswith(prefix) for prefix in ["Serverless", *serverless])

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
            # Taken as a map, it would reach a resource or an environment as its own text.
            if key.startswith("Fn::"):
                raise UnsupportedTemplate(f"{key} is not emulated by the local stack")
        return {k: r for k, v in value.items() if (r := self.resolve(v)) is not None}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda arg: not self._boolean(_arguments("Fn::Not", arg, 1)[0], "Fn::Not"),
            "Fn::And": lambda arg: all(
                [self._boolean(a, "Fn::And") for a in _arguments("Fn::And", arg, 2, 10)]
            ),
            "Fn::Or": lambda arg: any(
                [self._boolean(a, "Fn::Or") for a in _arguments("Fn::Or", arg, 2, 10)]
            ),
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda arg: base64.b64encode(
                scalar_text(self.resolve(arg), "Fn::Base64").encode()
            ).decode("ascii"),
            "Condition": self.condition,
        }

    def _if(self, arg: Any) -> Any:
        name, if_true, if_false = _arguments("Fn::If", arg, 3)
        return self.resolve(if_true if self.condition(name) else if_false)

    def _equals(self, arg: Any) -> bool:
        first, second = _arguments("Fn::Equals", arg, 2)
        return self._comparable(first) == self._comparable(second)

    def _select(self, arg: Any) -> Any:
        index_value, items_value = _arguments("Fn::Select", arg, 2)
        index, items = self.resolve(index_value), self.resolve(items_value)
        text = "" if isinstance(index, bool) else scalar_text(index, "Fn::Select index")
        if not (text.isascii() and text.isdigit()):
            raise InvalidTemplate(
                f"Fn::Select: the index must be a whole number >= 0, not {index!r}"
            )
        if not isinstance(items, list):
            raise InvalidTemplate(f"Fn::Select: a list is needed, not {items!r}")
        if int(text) >= len(items):
            raise InvalidTemplate(f"Fn::Select: no item {text} in a list of {len(items)}")
        return items[int(text)]

    def _split(self, arg: Any) -> list[str]:
        delimiter, text = _arguments("Fn::Split", arg, 2)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidTemplate(
                f"Fn::Split: the delimiter must be a non-empty string, not {delimiter!r}"
            )
        return scalar_text(self.resolve(text), "Fn::Split").split(delimiter)

    def _join(self, arg: list[Any]) -> str:
        _arguments("Fn::Join", arg, 2)
        items = self.resolve(arg[1])
        if not isinstance(items, list):
            raise InvalidTemplate(f"Fn::Join: a list is needed, not {items!r}")
        return str(arg[0]).join(scalar_text(item, "Fn::Join") for item in items)

    def _find_in_map(self, arg: list[Any]) -> Any:
        # A fourth item, DefaultValue, takes the AWS::LanguageExtensions transform.
        if not isinstance(arg, list) or len(arg) != 3:
            raise UnsupportedTemplate("Fn::FindInMap takes exactly [map, top key, second key]")
        keys = [scalar_text(self.resolve(item), "Fn::FindInMap") for item in arg]
        found: Any = self.template.get("Mappings", {})
        for depth, key in enumerate(keys):
            # CloudFormation's keys are strings; YAML reads an unquoted account id as a number.
            by_text = (
                {scalar_text(k): v for k, v in found.items()} if isinstance(found, Mapping) else {}
            )
            if key not in by_text:
                path = ".".join(keys[: depth + 1])
                raise InvalidTemplate(f"Fn::FindInMap: no {path} in Mappings")
            found = by_text[key]
        return self.resolve(found)

    def _comparable(self, operand: Any) -> str | list[str]:
        """An Fn::Equals operand as CloudFormation compares it: as text (`90` equals "90")."""
        value = self.resolve(operand)
        if isinstance(value, list):
            return [scalar_text(item, "Fn::Equals") for item in value]
        return scalar_text(value, "Fn::Equals")

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise InvalidTemplate(f"Ref takes a name, not {name!r}")
        self._refuse_absent(f"Ref {name}", name)
        if name not in self.refs:
            self.refuse_undefined(f"Ref {name}", name)
            raise KeyError(f"Ref {name} is not known (yet)")
        return self.refs[name]

    def _get_att(self, arg: Any) -> Any:
        # The long form takes "LogicalId.Attribute" too; an attribute's name may hold dots.
        if isinstance(arg, str) and "." in arg:
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise InvalidTemplate(
                f'Fn::GetAtt takes [logical id, attribute] or "LogicalId.Attribute", not {arg!r}'
            )
        logical_id, attribute = arg
        self._refuse_absent(f"GetAtt {logical_id}.{attribute}", logical_id)
        if (logical_id, attribute) not in self.attributes:
            self.refuse_undefined(
                f"GetAtt {logical_id}.{attribute}", logical_id, resources_only=True
            )
            raise KeyError(f"GetAtt {logical_id}.{attribute} is not known (yet)")
        return self.attributes[(logical_id, attribute)]

    def _sub(self, arg: Any) -> str:
        text, variables = _arguments("Fn::Sub", arg, 2) if isinstance(arg, list) else (arg, {})
        if not isinstance(text, str) or not isinstance(variables, dict):
            raise InvalidTemplate(f"Fn::Sub takes a string or [string, map], not {arg!r}")
        local = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            where = f"Fn::Sub ${{{name}}}"
            if name in local:
                return scalar_text(local[name], where)
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return scalar_text(self._get_att([logical_id, attribute]), where)
            return scalar_text(self._ref(name), where)

        return re.sub(r"\$\{([^}]+)\}", replace, text)
