"""Migration models (snapshots, mappings, contracts, runs) — see the issues for each."""

from __future__ import annotations
