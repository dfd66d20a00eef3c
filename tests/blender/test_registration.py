"""Registration of the installed extension: enable/disable cycles leave nothing behind."""

from __future__ import annotations

import pytest

from .conftest import bpy_params


@pytest.mark.parametrize("python", bpy_params())
def test_disable_enable_twice(python, blender, built_zip):
    run = blender(python, "bl_enable_disable.py", "--zip", built_zip)
    registered = {
        "enabled": True,
        "scene_prop": True,
        "status_draws": 1,
        "menu_entries": {"SEQUENCER_MT_strip": 1, "SEQUENCER_MT_context_menu": 1},
        "load_pre": 1,
        "prefs": True,
    }
    for stage in ("installed", "enabled0", "enabled1"):
        facts = run.stage(stage)
        assert {k: facts[k] for k in registered} == registered, (stage, facts)
        assert len(facts["classes"]) == 10, facts["classes"]
        assert facts["settings_steps"] == 400  # scene.fsgan works, with its default
    # 400 steps within a 5-minute limit: the steps end a run on a GPU or a CPU with bf16, the
    # limit on a slower CPU (docs/QUALITY.md, "Time Limit: 5 minutes"); frames are letterboxed
    # into the resolution unless Fit Strip Aspect is on (docs/QUALITY.md, "Fit Strip Aspect");
    # Optical Flow Guidance is opt-in ("The flow term");
    # a script calling the operator without them gets the same
    installed = run.stage("installed")
    want = {"steps": 400, "minutes": 5.0, "fit_aspect": False, "flow_guidance": False}
    assert installed["limits"] == want, installed
    assert installed["operator_limits"] == installed["limits"], installed
    for stage in ("disabled0", "disabled1"):
        facts = run.stage(stage)
        assert facts["enabled"] is False
        assert facts["scene_prop"] is False  # the PointerProperty is removed on unregister
        assert facts["classes"] == []
        assert facts["status_draws"] == 0
        assert set(facts["menu_entries"].values()) == {0}, facts
        assert facts["load_pre"] == 0
    assert "Traceback" not in run.output
