"""How the local stack reads a template: parameters, conditions and intrinsic functions."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom_local.template import Resolver


def parameters_template() -> dict[str, Any]:
    return {
        "Parameters": {
            "Retention": {"Type": "Number", "Default": 90},
            "Strict": {"Type": "String", "Default": True},
            "Audiences": {"Type": "CommaDelimitedList", "Default": "a, b"},
        },
        "Conditions": {
            "DefaultRetention": {"Fn::Equals": [{"Ref": "Retention"}, 90]},
            "IsStrict": {"Fn::Equals": [{"Ref": "Strict"}, "true"]},
        },
    }


@pytest.mark.parametrize(
    "given",
    [{}, {"Retention": "90", "Strict": "true", "Audiences": "a,b"}],
    ids=["defaults", "command line"],
)
def test_parameter_values_are_strings_wherever_they_come_from(given: dict[str, str]) -> None:
    """CloudFormation holds every parameter value as a string (a list type: strings), so the
    YAML-typed default and the same value from the command line compare alike."""
    resolver = Resolver.for_template(parameters_template(), parameters=given)
    assert resolver.refs["Retention"] == "90"
    assert resolver.refs["Strict"] == "true"
    assert resolver.refs["Audiences"] == ["a", "b"]
    assert resolver.condition("DefaultRetention")
    assert resolver.condition("IsStrict")


def test_equals_compares_as_text() -> None:
    resolver = Resolver.for_template(parameters_template(), parameters={"Retention": "30"})
    assert not resolver.condition("DefaultRetention")
    assert resolver.resolve({"Fn::Equals": [True, "true"]})
    assert resolver.resolve({"Fn::Equals": [{"Ref": "Audiences"}, ["a", "b"]]})
