"""FrameSequenceGAN for Blender: train a next-frame GAN on an image or movie strip and extend it.

Registration only. The add-on never imports torch: training and generation run in a separate
worker process (``python -m core worker``), see worker_client.py.
"""

import atexit

import bpy

from . import menus, operators, panels, preferences, properties

classes = (
    *preferences.classes,
    *properties.classes,
    *operators.classes,
    *panels.classes,
    *menus.classes,
)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    bpy.types.Scene.fsgan = bpy.props.PointerProperty(
        type=properties.FSGAN_PG_settings,
        name="FrameSequenceGAN",
        description="FrameSequenceGAN settings of this scene",
    )
    panels.register_extras()
    menus.register_extras()
    operators.register_handlers()
    atexit.register(preferences.cancel_install)  # Blender quits during an install


def unregister():
    atexit.unregister(preferences.cancel_install)
    preferences.shutdown()
    operators.unregister_handlers()
    menus.unregister_extras()
    panels.unregister_extras()
    del bpy.types.Scene.fsgan
    _unregister_classes()
