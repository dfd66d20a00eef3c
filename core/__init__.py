"""FrameSequenceGAN engine: pure PyTorch, importable without Blender.

Heavy modules (torch) are imported by the submodules, not here, so ``import core`` and
``core.protocol`` stay cheap for the add-on side.
"""

__version__ = "0.1.0"
