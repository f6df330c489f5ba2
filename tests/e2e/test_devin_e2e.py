"""Devin has no end-to-end run here, and this test says why in pytest's summary (see plugins/devin/README.md)."""

from __future__ import annotations

import shutil

import pytest

from aq_core.engine import Engine

WHY = (
    "devin: no end-to-end run with the real CLI: Devin for Terminal is published on no package registry this "
    "project can install from (its installer downloads a binary from Cognition's servers), and it documents "
    "no setting that points it at another model endpoint, so it cannot be aimed at the scripted model server"
)


def test_devin_end_to_end_cannot_run_here() -> None:
    # Were a devin ever on PATH, that alone would not help: it would still talk to Cognition's service.
    exe = Engine(name="devin", binary="devin").resolve()
    found = (
        f" (a devin was found at {exe}, but it cannot be pointed at a local model)" if exe and shutil.which(exe) else ""
    )
    pytest.skip(WHY + found)
