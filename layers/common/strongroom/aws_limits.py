"""How long a function waits for AWS, and how many times it asks.

botocore waits 60 s to connect and 60 s for each read, and tries 3 times: one unresponsive
endpoint could hold a call for six minutes, far past an API function's 30 s. Lambda would then
end the function wherever it stood, and API Gateway would answer 503 for a change that had
committed (its audit flush, which runs after the commit, is the call most often left waiting).
With these limits a call fails as an error of its own, which our code already maps (a 500
before a commit, a logged flush after it), well within the function's timeout.

    dynamodb = lazy_client(session, "dynamodb")                   # PROMPT_CALLS
    s3 = lazy_client(session, "s3", config=TRANSFER_CALLS)        # the backup worker's parts

A call's worst case is `worst_case_seconds(config)`: tests hold it under each function's
timeout in template.yaml.
"""

from __future__ import annotations

from botocore.config import Config

# DynamoDB, KMS, STS, Secrets Manager and small S3 objects answer in milliseconds; a read that
# takes seconds is a fault, and the retries (standard mode) are for faults that pass.
PROMPT_CALLS = Config(
    connect_timeout=1,
    read_timeout=4,
    retries={"mode": "standard", "total_max_attempts": 3},
)
# The backup worker (900 s) sends multi-megabyte parts to S3: a part needs longer than a
# prompt call, and one lost part costs a whole run, so it is worth more attempts.
TRANSFER_CALLS = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "total_max_attempts": 5},
)

# botocore's standard mode waits at most rand(0, 1) * min(2 ** i, 20) s before retry i (from 0;
# throttling errors, other errors wait less), raised by a service's x-amz-retry-after header to
# at most 5 s more.
_MAX_BACKOFF_SECONDS = 20
_MAX_RETRY_AFTER_EXTRA_SECONDS = 5


def worst_case_seconds(config: Config) -> float:
    """The longest one call can take under `config`: every attempt stalls to its timeouts, and
    every wait between attempts is the longest standard mode allows."""
    # Config sets its options as attributes at run time, out of a type checker's sight.
    options: dict[str, object] = vars(config)
    retries = options["retries"]
    if not isinstance(retries, dict):
        raise TypeError("the config sets no retries")
    attempts = int(retries["total_max_attempts"])
    per_attempt = _seconds(options["connect_timeout"]) + _seconds(options["read_timeout"])
    waits = sum(
        min(2**retry, _MAX_BACKOFF_SECONDS) + _MAX_RETRY_AFTER_EXTRA_SECONDS
        for retry in range(attempts - 1)
    )
    return float(attempts * per_attempt + waits)


def _seconds(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"a timeout must be a number of seconds, not {value!r}")
    return float(value)
