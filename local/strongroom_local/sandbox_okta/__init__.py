"""A sandbox Okta: the read side of Okta's Management API for a seeded org, on 127.0.0.1.

For `make run`, the tests and the benchmarks: deterministic data of any size up to 100,000
users and more (rendered lazily), Link pagination with opaque cursors and Okta's page-size caps,
rate-limit buckets with Okta's headers and 429s, counters, and fault injection. See
local/README.md ("The sandbox Okta") for the endpoints and the control surface.
"""

from strongroom_local.sandbox_okta.api import RESOURCES, resource_listings
from strongroom_local.sandbox_okta.control import SandboxControl
from strongroom_local.sandbox_okta.exceptions import (
    ControlRequestRefused,
    InvalidParameter,
    InvalidSandboxSetting,
    ResourceNotFound,
    SandboxOktaError,
)
from strongroom_local.sandbox_okta.faults import FaultPlan
from strongroom_local.sandbox_okta.org import (
    POLICY_TYPES,
    SECRET_FIELDS,
    SECRET_MARKER,
    Listing,
    OrgSpec,
    SandboxOrg,
    without_secret_fields,
)
from strongroom_local.sandbox_okta.ratelimit import (
    BUCKETS,
    DEFAULT_RATE_LIMITS,
    RateLimit,
    bucket_for,
)
from strongroom_local.sandbox_okta.server import SandboxOkta

__all__ = [
    "BUCKETS",
    "DEFAULT_RATE_LIMITS",
    "POLICY_TYPES",
    "RESOURCES",
    "SECRET_FIELDS",
    "SECRET_MARKER",
    "ControlRequestRefused",
    "FaultPlan",
    "InvalidParameter",
    "InvalidSandboxSetting",
    "Listing",
    "OrgSpec",
    "RateLimit",
    "ResourceNotFound",
    "SandboxControl",
    "SandboxOkta",
    "SandboxOktaError",
    "SandboxOrg",
    "bucket_for",
    "resource_listings",
    "without_secret_fields",
]
