"""Signals the run machinery sends, so higher layers (governance) can react
without migration importing them: gate evaluation, sign-off voiding."""

from __future__ import annotations

from django.dispatch import Signal

#: sent after a run reached a terminal state; kwargs: run
run_finished = Signal()
#: sent when a newer run supersedes an older one; kwargs: run (old), by (new)
run_superseded = Signal()
