"""bench/step_cost.py at a toy size: one row per variant, the first the ratios' base, and each
variant's overrides reach its trainer."""

from __future__ import annotations

import torch

from bench import step_cost


def test_variants_parse():
    assert step_cost.parse_variants("a:;b:warp_weight=0.5,guard=off,batch_size=4") == [
        ("a", {}),
        ("b", {"warp_weight": 0.5, "guard": "off", "batch_size": 4}),
    ]


def test_rows_side_by_side():
    threads = torch.get_num_threads()
    try:
        rows = step_cost.main([
            "--variants", "default:;warp_term:warp_weight=10", "--size", "32x32",
            "--width-mult", "0.125", "--steps", "1", "--rounds", "2", "--warmup", "0",
            "--batch", "2",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert [r["variant"] for r in rows] == ["default", "warp_term"]
    assert rows[0]["ratio"] == 1.0 and len(rows[1]["rounds"]) == 2
    assert all(r["s_per_step"] > 0 for r in rows)
    assert [r["config"]["warp_weight"] for r in rows] == [0.0, 10.0]
