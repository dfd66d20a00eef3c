"""bench/panel.py at a toy size, in real bpy: its report adds up."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_panel_benchmark_reports_cold_and_warm(tmp_path):
    out = tmp_path / "panel.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "panel.py"), "--frames", "20", "300",
         "--repeat", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [x["frames"] for x in r["results"]] == [20, 300] and r["repeat"] == 3
    for x in r["results"]:
        assert x["cold_ms"] > 0 and x["warm_ms"] > 0
        assert abs(x["ratio"] - x["cold_ms"] / x["warm_ms"]) < 1e-9
    assert "cold/warm" in proc.stdout
