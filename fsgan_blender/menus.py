"""The add-on's operators in the Sequencer's menus: Strip > FrameSequenceGAN and the strips'
right-click menu. Besides the sidebar, this is where a user looks for them, and what F3 search
finds (it searches menus; operators in no menu only show with Developer Extras on).
"""

from __future__ import annotations

import bpy

# Menus of the Sequencer that get a FrameSequenceGAN submenu (each present in 4.2, 4.5, 5.0).
HOSTS = ("SEQUENCER_MT_strip", "SEQUENCER_MT_context_menu")


class FSGAN_MT_strip(bpy.types.Menu):
    bl_label = "FrameSequenceGAN"
    bl_idname = "FSGAN_MT_strip"

    def draw(self, context):
        layout = self.layout
        layout.operator_context = "INVOKE_DEFAULT"  # the UI way: modal, Blender stays usable
        layout.operator("fsgan.train_on_strip", icon="PLAY")
        layout.operator("fsgan.extend_animation", icon="SEQ_SEQUENCER")
        layout.separator()
        layout.operator("fsgan.set_checkpoint", text="Use Checkpoint File...", icon="FILEBROWSER")
        layout.operator("fsgan.cancel_job", text="Cancel Job", icon="CANCEL")


def draw_entry(self, context):
    self.layout.separator()
    self.layout.menu(FSGAN_MT_strip.bl_idname, icon="SEQ_SEQUENCER")


classes = (FSGAN_MT_strip,)


def register_extras() -> None:
    for name in HOSTS:
        host = getattr(bpy.types, name, None)
        if host is not None:
            host.append(draw_entry)


def unregister_extras() -> None:
    for name in HOSTS:
        host = getattr(bpy.types, name, None)
        if host is not None:
            host.remove(draw_entry)
