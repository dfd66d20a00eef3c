"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib
import os
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def addon_module():
    """``addon_module("installer")``: a module of fsgan_blender/ that does not import bpy, loaded
    in a bare package (the add-on's __init__ imports bpy), its relative imports working."""
    pkg = types.ModuleType("fsgan_src")
    pkg.__path__ = [os.path.join(ROOT, "fsgan_blender")]
    sys.modules["fsgan_src"] = pkg
    try:
        yield lambda name: importlib.import_module(f"fsgan_src.{name}")
    finally:
        for name in [n for n in sys.modules if n == "fsgan_src" or n.startswith("fsgan_src.")]:
            del sys.modules[name]
