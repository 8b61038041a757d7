"""The `strongroom` command's arguments: what it refuses before it starts or mints anything."""

from __future__ import annotations

import pytest

from strongroom_local.cli import build_parser


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`strongroom <argv>` is a usage error (exit 2, before `main` runs anything): its stderr."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_local_refuses_a_stack_without_workers(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # With no worker a function never runs: every request would wait 30 s for a 503.
    assert "--max-workers" in refused(["local", "--max-workers", workers], capsys)


def test_local_takes_one_worker_or_more() -> None:
    assert build_parser().parse_args(["local", "--max-workers", "1"]).max_workers == 1
    assert build_parser().parse_args(["local"]).max_workers == 4
