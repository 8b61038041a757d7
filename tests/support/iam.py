"""A small IAM policy evaluator for the identity policies template.yaml gives its functions.

moto does not enforce IAM. `tests/support/iam_check.py` derives, from every AWS call a function
makes in a unit test, the IAM requests it stands for (action, resource ARN, condition keys) and
asks `Role.evaluate` whether the function's role allows them, so the template and the code
cannot drift apart.

Modelled, as IAM documents it for identity-based policies:
- `Effect` Allow / Deny; an explicit Deny wins over any Allow; nothing matching is a deny.
- `Action` / `NotAction` with `*` and `?` wildcards, case-insensitive.
- `Resource` / `NotResource` with `*` and `?` wildcards (each may span `:` and `/`).
- `Condition`: the String*, Arn*, Bool and Null operators, their `IfExists` forms and the
  `ForAllValues:` / `ForAnyValue:` set qualifiers. Several operators, or several keys under one
  operator, must all hold; several values of one key are alternatives. A key absent from the
  request: plain operators are false (negated ones true), `IfExists` is true, `ForAllValues` is
  true (the pitfall AWS warns of), `ForAnyValue` is false. Condition key names are
  case-insensitive, values case-sensitive (except `StringEqualsIgnoreCase`).

Not modelled (an unknown operator or policy form raises `UnsupportedPolicy`, so a template that
starts to use one fails loudly instead of being evaluated wrongly): Numeric and Date operators,
policy variables (`${aws:username}`), `Principal` (identity policies have none), permission
boundaries, SCPs, session policies, resource-based policies other than a role's trust policy
(see iam_check for AssumeRole), SAM policy templates (`DynamoDBReadPolicy: ...`) and managed
policy ARNs in a function's `Policies:` (none are used; expand one here if that changes).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# A condition value in a request: one string, several (multi-valued keys), or absent.
ContextValue = str | Sequence[str]


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not model."""


@dataclass(frozen=True)
class Request:
    """One authorization question: may the role do `action` on `resource`, given `context`?"""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in sorted(self.context.items()))
        return f"{self.action} on {self.resource}" + (f" [{shown}]" if shown else "")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # "allowed", "explicit deny" or "no statement allows it"
    reason: str
    statement: str | None = None


def _show(value: ContextValue) -> str:
    return value if isinstance(value, str) else "[" + ", ".join(value) + "]"


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's `*` (any run of characters) and `?` (one character); everything else literal."""
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# ---- conditions ---------------------------------------------------------------------------

_BASE_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    # name: (value test, negated)
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (wildcard_match, False),
    "StringNotLike": (wildcard_match, True),
    "ArnEquals": (lambda p, v: p == v, False),
    "ArnNotEquals": (lambda p, v: p == v, True),
    "ArnLike": (wildcard_match, False),
    "ArnNotLike": (wildcard_match, True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False),
}


@dataclass(frozen=True)
class Condition:
    """One operator block entry: `operator` applied to `key` with the policy's `values`."""

    operator: str
    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        base, _, _ = self._parts()
        if base != "Null" and base not in _BASE_OPERATORS:
            raise UnsupportedPolicy(f"condition operator {self.operator} is not modelled")

    def _parts(self) -> tuple[str, str | None, bool]:
        qualifier: str | None = None
        name = self.operator
        if ":" in name:
            qualifier, name = name.split(":", 1)
            if qualifier not in ("ForAllValues", "ForAnyValue"):
                raise UnsupportedPolicy(f"condition qualifier {qualifier} is not modelled")
        if_exists = name.endswith("IfExists")
        if if_exists:
            name = name[: -len("IfExists")]
        return name, qualifier, if_exists

    def holds(self, context: Mapping[str, ContextValue]) -> bool:
        base, qualifier, if_exists = self._parts()
        raw = context.get(self.key)
        present = raw is not None and not (not isinstance(raw, str) and len(raw) == 0)
        if base == "Null":
            wanted_absent = {v.lower() for v in self.values}
            return ("true" in wanted_absent and not present) or (
                "false" in wanted_absent and present
            )
        test, negated = _BASE_OPERATORS[base]
        request_values = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)

        def matches(value: str) -> bool:
            hit = any(test(policy_value, value) for policy_value in self.values)
            return not hit if negated else hit

        if qualifier == "ForAllValues":
            return all(matches(value) for value in request_values)
        if qualifier == "ForAnyValue":
            return any(matches(value) for value in request_values)
        if not present:
            return if_exists or negated
        if negated:
            return all(matches(value) for value in request_values)
        return any(matches(value) for value in request_values)


def _conditions(block: Any) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise UnsupportedPolicy(f"Condition must be a mapping, not {block!r}")
    found = []
    for operator, entries in block.items():
        if not isinstance(entries, Mapping):
            raise UnsupportedPolicy(f"condition {operator} must map keys to values")
        for key, values in entries.items():
            found.append(
                Condition(str(operator), str(key).lower(), tuple(str(v) for v in _as_list(values)))
            )
    return tuple(found)


# ---- statements and policies ----------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any], index: int) -> Statement:
        known = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
        unknown = set(raw) - known
        if unknown:
            raise UnsupportedPolicy(f"statement keys {sorted(unknown)} are not modelled")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement Effect {effect!r}")
        statement = cls(
            sid=str(raw.get("Sid", f"#{index}")),
            effect=effect,
            actions=tuple(str(a) for a in _as_list(raw.get("Action"))),
            not_actions=tuple(str(a) for a in _as_list(raw.get("NotAction"))),
            resources=tuple(str(r) for r in _as_list(raw.get("Resource"))),
            not_resources=tuple(str(r) for r in _as_list(raw.get("NotResource"))),
            conditions=_conditions(raw.get("Condition")),
        )
        if bool(statement.actions) == bool(statement.not_actions):
            raise UnsupportedPolicy(f"statement {statement.sid}: one of Action, NotAction")
        if bool(statement.resources) == bool(statement.not_resources):
            raise UnsupportedPolicy(f"statement {statement.sid}: one of Resource, NotResource")
        for text in statement.resources + statement.not_resources:
            if "${" in text:
                raise UnsupportedPolicy(f"policy variables are not modelled: {text}")
        return statement

    def applies(self, request: Request) -> bool:
        if self.actions:
            if not any(wildcard_match(a, request.action, ignore_case=True) for a in self.actions):
                return False
        elif any(wildcard_match(a, request.action, ignore_case=True) for a in self.not_actions):
            return False
        if self.resources:
            if not any(wildcard_match(r, request.resource) for r in self.resources):
                return False
        elif any(wildcard_match(r, request.resource) for r in self.not_resources):
            return False
        context = _lower_keys(request.context)
        return all(condition.holds(context) for condition in self.conditions)


def _lower_keys(context: Mapping[str, ContextValue]) -> Mapping[str, ContextValue]:
    if all(k == k.lower() for k in context):
        return context
    return {k.lower(): v for k, v in context.items()}


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Policy:
        if not isinstance(document, Mapping) or "Statement" not in document:
            raise UnsupportedPolicy(f"not a policy document: {document!r}")
        raw = _as_list(document["Statement"])
        return cls(tuple(Statement.parse(s, i) for i, s in enumerate(raw)))


def evaluate(policies: Iterable[Policy], request: Request) -> Decision:
    """Explicit deny, else allow if any statement allows, else deny (IAM's default)."""
    allowed_by: str | None = None
    for policy in policies:
        for statement in policy.statements:
            if not statement.applies(request):
                continue
            if statement.effect == "Deny":
                return Decision(False, "explicit deny", statement.sid)
            allowed_by = allowed_by or statement.sid
    if allowed_by is not None:
        return Decision(True, "allowed", allowed_by)
    return Decision(False, "no statement allows it")


# ---- the template's roles -------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A function's role: its identity policies, resolved for one emulated stack."""

    function: str
    arn: str
    policies: tuple[Policy, ...]

    def evaluate(self, request: Request) -> Decision:
        return evaluate(self.policies, request)


def function_role(template: Mapping[str, Any], resolver: Any, function: str) -> Role:
    """The role SAM makes for `function` (an AWS::Serverless::Function of `template`) from its
    `Policies:`, with every intrinsic resolved by `resolver` (a strongroom_local Resolver that
    knows the stack's physical names, as `provision` leaves it)."""
    resource = template["Resources"][function]
    if resource.get("Type") != "AWS::Serverless::Function":
        raise UnsupportedPolicy(f"{function} is not an AWS::Serverless::Function")
    properties = resource.get("Properties", {})
    if "Role" in properties:
        raise UnsupportedPolicy(f"{function} names its own Role; only SAM-made roles are modelled")
    policies = []
    for entry in _as_list(properties.get("Policies")):
        if isinstance(entry, str):
            raise UnsupportedPolicy(f"{function}: managed policy {entry} is not modelled")
        if isinstance(entry, Mapping) and "Statement" not in entry:
            names = ", ".join(entry)
            raise UnsupportedPolicy(
                f"{function}: SAM policy template {names} is not modelled; expand it in "
                "tests/support/iam.py"
            )
        policies.append(Policy.parse(resolver.resolve(entry)))
    arn = str(resolver.resolve({"Fn::GetAtt": [f"{function}Role", "Arn"]}))
    return Role(function=function, arn=arn, policies=tuple(policies))


def role_trust_policies(template: Mapping[str, Any], resolver: Any) -> dict[str, Any]:
    """Role ARN -> trust policy (AssumeRolePolicyDocument) of every AWS::IAM::Role, with its
    `Principal` kept: `trusts` reads it."""
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        arn = str(resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]}))
        document = resolver.resolve(resource["Properties"]["AssumeRolePolicyDocument"])
        found[arn] = document
    return found


def trusts(trust_document: Mapping[str, Any], principal_arn: str, action: str) -> Decision:
    """Whether a role's trust policy lets `principal_arn` (a role of the same account) do
    `action` (sts:AssumeRole) by itself.

    A trust policy that names the role's own ARN is enough within one account; one that names
    the account (`arn:...:root`) or `*` delegates to the caller's identity policy, which must
    then allow the action too (`Decision.reason` says "delegated"). Any Deny that names the
    caller wins. Conditions in trust policies are not modelled (none are used)."""
    account_root = principal_arn.split(":role/", 1)[0] + ":root"
    named_by: str | None = None
    delegated_by: str | None = None
    for index, statement in enumerate(_as_list(trust_document.get("Statement"))):
        if "Condition" in statement:
            raise UnsupportedPolicy("conditions in a trust policy are not modelled")
        principal = statement.get("Principal", {})
        named = ["*"] if principal == "*" else []
        if isinstance(principal, Mapping):
            named = [str(n) for n in _as_list(principal.get("AWS"))]
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        if not any(wildcard_match(a, action, ignore_case=True) for a in actions):
            continue
        sid = str(statement.get("Sid", f"#{index}"))
        exact = principal_arn in named
        broad = any(n in ("*", account_root) for n in named)
        if statement.get("Effect") == "Deny" and (exact or broad):
            return Decision(False, "explicit deny in the trust policy", sid)
        if exact:
            named_by = named_by or sid
        elif broad:
            delegated_by = delegated_by or sid
    if named_by is not None:
        return Decision(True, "the trust policy names this role", named_by)
    if delegated_by is not None:
        return Decision(True, "delegated", delegated_by)
    return Decision(False, "the trust policy does not name this role")
