"""bench/peer_dagster.py keeps working: its quick mode runs Runwire's side and prints its row.

Only Runwire's side: the suite never installs or starts Dagster (bench/README.md, "Peer —
Dagster"). Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

NUMBER = r"\d+\.\d+"


async def test_peer_bench_quick_prints_runwire_row() -> None:
    text = await run_quick("peer_dagster.py", timeout=60)
    assert "Dagster left out" in text, text
    # system, runs, wall s, launch p50 p99, line p50 p99
    row = rf"^\s+Runwire\s+2\s+{NUMBER}" + rf"\s+{NUMBER}" * 4 + "$"
    assert re.search(row, text, re.MULTILINE), f"no figures for Runwire:\n{text}"
    for paragraph in ("Dagster does, Runwire does not:", "Runwire does, Dagster does not:"):
        assert paragraph in text, text
