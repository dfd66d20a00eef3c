"""strips.py and paths.py against real strips: trims, offsets, playhead, // paths, names."""

import os
import shutil
import sys
import time

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def names(paths):
    return [os.path.basename(p) for p in paths]


def look_stage(S, args):
    """The generated strip looks the way the source does: insert the source's own frames as the
    "generated" frames and compare the timeline's renders of the two strips."""
    scene = bpy.data.scenes.new("Look")
    collection = bl.strips_of(scene.sequence_editor_create())
    kw = {"length": 40} if bpy.app.version >= (5, 0, 0) else {"frame_end": 41}
    collection.new_effect("under", "COLOR", 1, 1, **kw).color = (0.2, 0.5, 0.9)
    src = collection.new_image("graded", os.path.join(args.frames, "frame_0001.png"), 2, 1)
    for i in range(2, 5):
        src.elements.append(f"frame_{i:04d}.png")
    src.blend_type, src.blend_alpha = "ADD", 0.6
    curves = bl.add_modifier(S, src, "Curves", "CURVES")
    points = curves.curve_mapping.curves[3].points  # the combined curve: two more points
    points.new(0.3, 0.6)
    points.new(0.7, 0.8)
    curves.curve_mapping.curves[0].points[0].location = (0.0, 0.1)
    curves.curve_mapping.update()
    balance = bl.add_modifier(S, src, "Balance", "COLOR_BALANCE")
    balance.color_balance.lift = (1.1, 0.9, 1.0)
    balance.color_balance.gain = (0.8, 1.2, 1.0)
    balance.color_multiply = 1.3
    masked = bl.add_modifier(S, src, "Masked", "BRIGHT_CONTRAST")
    masked.bright, masked.contrast, masked.mute = 0.1, 20.0, True
    masked.input_mask_type = "STRIP"
    masked.input_mask_strip = collection["under"]
    hue = bl.add_modifier(S, src, "Hue", "HUE_CORRECT")
    hue.curve_mapping.curves[1].points.new(0.5, 0.8)
    hue.curve_mapping.update()
    names = [f"frame_{i:04d}.png" for i in range(1, 5)]
    workspace = bpy.context.workspace
    before = getattr(workspace, "sequencer_scene", None)  # 5.0: the copy borrows it
    new = S.insert_image_strip(scene, src, args.frames, names, 20)
    kept = getattr(workspace, "sequencer_scene", None) == before
    plain = collection.new_image("plain", os.path.join(args.frames, "frame_0001.png"), 4, 30)
    for name in names[1:]:
        plain.elements.append(name)
    folder = os.path.join(args.work, "look")
    os.makedirs(folder, exist_ok=True)
    diffs, plain_diffs = [], []
    for k in range(4):  # frame k of each strip shows frame_000{k+1}
        a = bl.render(scene, 1 + k, os.path.join(folder, "src"))
        b = bl.render(scene, 20 + k, os.path.join(folder, "new"))
        c = bl.render(scene, 30 + k, os.path.join(folder, "plain"))
        diffs.append(round(float(np.abs(a - b).mean() * 255), 3))
        plain_diffs.append(round(float(np.abs(a - c).mean() * 255), 3))
    copied = new.modifiers
    bl.result(
        stage="look",
        source=bl.describe(src),
        new=bl.describe(new),
        new_vs_source=diffs,
        sequencer_scene_kept=kept,
        plain_vs_source=plain_diffs,
        curve_points=[
            list(map(float, p.location)) for p in copied["Curves"].curve_mapping.curves[3].points
        ],
        first_point=list(map(float, copied["Curves"].curve_mapping.curves[0].points[0].location)),
        gain=list(copied["Balance"].color_balance.gain),
        multiply=copied["Balance"].color_multiply,
        mask=[
            copied["Masked"].input_mask_type,
            getattr(copied["Masked"].input_mask_strip, "name", None),
        ],
    )
    bpy.data.scenes.remove(scene)


def linked_stage(S, args):
    """A strip in a scene linked from another .blend: changes to it would not be saved."""
    library = os.path.join(args.work, "library.blend")
    shot = bpy.data.scenes.new("Shot")
    strip = bl.strips_of(shot.sequence_editor_create()).new_image(
        "plate", os.path.join(args.frames, "frame_0001.png"), 1, 1
    )
    for i in range(2, 6):
        strip.elements.append(f"frame_{i:04d}.png")
    # Not bpy.data.libraries.write(library, {shot}): it crashes bpy 5.2.3 (a scene with a
    # sequence editor); a copy of the whole file holds the scene as well.
    bpy.ops.wm.save_as_mainfile(filepath=library, copy=True)
    bpy.data.scenes.remove(shot)
    with bpy.data.libraries.load(library, link=True) as (source, target):
        target.scenes = ["Shot"]
    linked = target.scenes[0]
    plate = bl.strips_of(linked.sequence_editor)["plate"]
    bl.result(stage="linked", library=linked.library is not None, problem=S.strip_problem(plate))
    bpy.data.scenes.remove(linked)


def meta_stage(S, args):
    """insert_image_strip + reveal_in_metas inside a meta, and inside a meta in a meta: every
    new frame plays (the render at the new strip's frame k equals the plate's render of the same
    file), and the metas grow to the new end without moving."""
    scene = bpy.data.scenes.new("metas")
    se = scene.sequence_editor_create()
    top = bl.strips_of(se)
    out = {}
    for case, start in (("single", 1), ("nested", 101)):
        plate = top.new_image(f"{case}_plate", os.path.join(args.frames, "frame_0001.png"), 1,
                              start)  # fmt: skip
        for i in range(2, 9):
            plate.elements.append(f"frame_{i:04d}.png")
        meta = top.new_meta(f"{case}_meta", 2, start)
        plate.move_to_meta(meta)
        meta.frame_final_end = start + 8
        outer = None
        if case == "nested":
            outer = top.new_meta(f"{case}_outer", 3, start)
            meta.move_to_meta(outer)
            outer.frame_final_end = start + 8
        files = [f"frame_{i:04d}.png" for i in range(9, 17)]  # the plate's next 8 files
        new = S.insert_image_strip(scene, plate, args.frames, files, start + 8)
        hidden = S.reveal_in_metas(se, new)
        # The same files as a plain strip in a scene of its own: what each frame must show.
        ref_scene = bpy.data.scenes.new(f"{case}_ref")
        ref = bl.strips_of(ref_scene.sequence_editor_create()).new_image(
            "ref", os.path.join(args.frames, files[0]), 1, start + 8
        )
        for name in files[1:]:
            ref.elements.append(name)
        diffs, steps = [], []
        for k in (0, 3, 7):
            a = bl.render(scene, start + 8 + k, os.path.join(args.work, f"{case}_new"))
            b = bl.render(ref_scene, start + 8 + k, os.path.join(args.work, f"{case}_ref"))
            diffs.append(round(float(abs(a - b).mean() * 255), 3))
            steps.append(b)
        moving = round(float(abs(steps[0] - steps[-1]).mean() * 255), 3)  # frames do differ
        bpy.data.scenes.remove(ref_scene)
        out[case] = {
            "hidden": hidden,
            "new": [new.frame_final_start, new.frame_final_end],
            "meta": [meta.frame_final_start, meta.frame_final_end, meta.channel],
            "outer": [outer.frame_final_start, outer.frame_final_end, outer.channel]
            if outer
            else None,
            "diffs": diffs,
            "moving": moving,
        }
    bl.result(stage="meta", **out)
    bpy.data.scenes.remove(scene)


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    S, P = addon.strips, addon.paths
    scene = bpy.context.scene

    strip = bl.add_image_strip("trimmed", args.frames, 16, channel=2, frame_start=10)
    strip.frame_offset_start = 2
    strip.frame_offset_end = 3
    try:
        S.context_frame_paths(strip, "PLAYHEAD", 5)
        outside = None
    except ValueError as exc:
        outside = str(exc)
    bl.result(
        stage="trimmed",
        final=[strip.frame_final_start, strip.frame_final_end],
        visible=names(S.visible_frame_paths(strip)),
        end_context=names(S.context_frame_paths(strip, "END", 0)),
        playhead_context=names(S.context_frame_paths(strip, "PLAYHEAD", 15)),
        outside=outside,
        problem=S.strip_problem(strip),
        resolution=S.strip_resolution(strip),
    )

    # Hold Offsets cut elements off the content (Blender shows element i + the start offset at
    # content frame i): not retiming, and the frames used are the ones the timeline shows.
    hold = bl.add_image_strip("hold", args.frames, 16, channel=3, frame_start=40)
    S.put(hold, "content_trim_start", 2)
    S.put(hold, "content_trim_end", 1)
    hold.frame_offset_start = 1  # and a handle trim on top
    shown_by_blender = [
        hold.strip_elem_from_frame(f).filename
        for f in range(S.left_handle(hold), S.right_handle(hold))
    ]
    hold_visible = names(S.visible_frame_paths(hold))
    hold.use_reverse_frames = True  # Blender decodes it now: the same files, reversed
    reversed_shown = [
        hold.strip_elem_from_frame(f).filename
        for f in range(S.left_handle(hold), S.right_handle(hold))
    ]
    reversed_elements = [
        hold.elements[addon.decode._shown_element(hold, i)].filename
        for i in S.visible_indices(hold)
    ]
    hold.use_reverse_frames = False
    bl.result(
        stage="hold_offsets",
        problem=S.strip_problem(hold, check_files=True),
        shown_by_blender=shown_by_blender,
        visible=hold_visible,
        end_context=names(S.context_frame_paths(hold, "END", 0)),
        resolution=S.strip_resolution(hold),
        reversed_shown=reversed_shown,
        reversed_elements=reversed_elements,
    )
    bl.top_strips().remove(hold)

    # The file list remembered for panels and polls follows every change the key sees at
    # once; a middle element's new file name shows after the TTL, and jobs read it afresh.
    mem = bl.add_image_strip("mem", args.frames, 6, channel=30)

    def shown():
        return names(S.source_files(mem, cached=True))

    seen = {"start": shown()}
    mem.frame_offset_start = 2
    seen["trimmed"] = shown()
    mem.elements.append("frame_0007.png")
    seen["appended"] = shown()
    mem.elements[-1].filename = "frame_0016.exr"
    seen["last_renamed"] = [shown(), addon.decode.needs_decode(mem, cached=True)]
    mem.directory = os.path.join(args.work, "elsewhere_frames") + os.sep
    seen["directory"] = sorted({os.path.dirname(p) for p in S.source_files(mem, cached=True)})
    mem.directory = args.frames + os.sep
    mem.elements[3].filename = "frame_0010.png"  # a middle file
    seen["middle_cached"] = shown()
    seen["middle_fresh"] = names(S.source_files(mem))
    ttl, S._FILES_TTL_S = S._FILES_TTL_S, 0.05
    time.sleep(0.1)
    seen["middle_after_ttl"] = shown()
    S._FILES_TTL_S = ttl
    bl.top_strips().remove(mem)
    bl.result(stage="remembered", seen=seen, directory=os.path.join(args.work, "elsewhere_frames"))

    meta_stage(S, args)

    # Handles dragged past the content hold its end frames: the playhead over a held frame
    # continues from the frame shown there.
    held = bl.add_image_strip("held", args.frames, 10, channel=31, frame_start=20)
    held.frame_final_end = 35  # frames 30-34 hold frame_0010
    held.frame_final_start = 16  # frames 16-19 hold frame_0001
    bl.result(
        stage="held",
        final=[held.frame_final_start, held.frame_final_end],
        after=names(S.context_frame_paths(held, "PLAYHEAD", 33)),
        before=names(S.context_frame_paths(held, "PLAYHEAD", 17)),
        inside=names(S.context_frame_paths(held, "PLAYHEAD", 22)),
    )
    bl.top_strips().remove(held)

    # Sub-frame handles: Blender truncates frame_final_end, the length stays 11 frames.
    subframe = {}
    for start in (5, -20):
        for offset in (1.5, 0.5, -0.5, -1.5):
            s = bl.add_image_strip("sub", args.frames, 11, channel=20, frame_start=start)
            s.frame_offset_end = offset
            subframe[f"{start}/{offset}"] = [S.content_length(s), S.strip_problem(s)]
            bl.top_strips().remove(s)
    bl.result(stage="subframe", lengths=subframe)

    moved = bl.add_image_strip("moved", args.frames, 16, channel=3, frame_start=1)
    moved.frame_start = 40  # moving keeps the trim; the content moves with it
    moved.frame_offset_start = 14
    bl.result(
        stage="moved",
        visible=names(S.visible_frame_paths(moved)),
        problem=S.strip_problem(moved),
        extend_problem=S.strip_problem(moved, min_frames=1),
    )

    # Relative (//) directories resolve against the saved .blend.
    project = os.path.join(args.work, "project")
    shutil.copytree(args.frames, os.path.join(project, "frames"))
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(project, "scene.blend"))
    rel = bl.add_image_strip("relative", os.path.join(project, "frames"), 4, channel=4)
    rel.directory = "//frames/"
    model = os.path.join(project, "models", "m.safetensors")
    S.set_checkpoint(rel, model)
    bl.result(
        stage="relative",
        paths=S.visible_frame_paths(rel),
        stored=rel["fsgan_checkpoint"],
        resolved=S.checkpoint_of(rel),
        project=project,
    )

    # Save As into another folder: the relative checkpoint path follows, as Blender's own
    # paths do; Save Copy leaves this file's paths as they were.
    deeper = os.path.join(project, "shots", "sh010")
    os.makedirs(deeper)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(deeper, "edit.blend"))
    moved = bl.top_strips()["relative"]
    after_save_as = [moved["fsgan_checkpoint"], S.checkpoint_of(moved)]
    copy_dir = os.path.join(args.work, "elsewhere")
    os.makedirs(copy_dir)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(copy_dir, "copy.blend"), copy=True)
    after_copy = [moved["fsgan_checkpoint"], S.checkpoint_of(moved)]
    try:  # a Save As that fails (no such folder) leaves the paths as they were
        bpy.ops.wm.save_as_mainfile(filepath=os.path.join(args.work, "no", "such", "x.blend"))
        failed_save = None
    except RuntimeError as exc:
        failed_save = str(exc)
    after_failed = [moved["fsgan_checkpoint"], S.checkpoint_of(moved)]
    bpy.ops.wm.open_mainfile(filepath=os.path.join(copy_dir, "copy.blend"))
    in_copy = S.checkpoint_of(bl.top_strips()["relative"])
    bpy.ops.wm.open_mainfile(filepath=os.path.join(deeper, "edit.blend"))
    scene = bpy.context.scene
    bl.result(
        stage="save_as",
        after_save_as=after_save_as,
        after_copy=after_copy,
        failed_save=failed_save is not None,
        after_failed=after_failed,
        in_copy=in_copy,
    )

    # Channels: the lowest free channel at or above the preferred one.
    bl.add_color_strip("c1", 5, 100, 120)
    bl.add_color_strip("c2", 6, 110, 111)
    collection = bl.top_strips()
    channels = bpy.context.scene.sequence_editor.channels
    channels[7].mute = True  # a new strip there would not play ...
    channels[8].lock = True  # ... or could not be edited
    closed = S.closed_channels(bpy.context.scene.sequence_editor)
    channels[7].mute = channels[8].lock = False
    bl.result(
        stage="channels",
        after_c1=S.free_channel(collection, 120, 130, 5),
        overlapping=S.free_channel(collection, 105, 112, 5),
        through_both=S.free_channel(collection, 90, 115, 5),
        closed=sorted(closed),
        past_closed=S.free_channel(collection, 105, 112, 5, closed),
    )

    # Names from .blend files never escape the output folder.
    scene.fsgan.output_dir = os.path.join(args.work, "out")
    outputs = {}
    for name in ("../../x", "/etc/passwd", "a/../../b", "..", "shot 01 é", "C:\\evil", ""):
        outputs[name] = P.output_dir(scene.fsgan, name)
    bl.result(
        stage="names",
        outputs=outputs,
        base=os.path.realpath(os.path.join(args.work, "out")),
        safe=[P.safe_name(n) for n in ("../../x", "a/b", ".hidden", "ok_name-1.2")],
        next_number=P.next_free_number(args.frames, "frame_"),
    )

    # Old job folders are pruned, except those of another Blender still running (its job may
    # be too): this process, the test (alive), and a process that has ended.
    import subprocess

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    jobs = os.path.join(args.work, "jobs")
    owners = {"mine": os.getpid(), "running": os.getppid(), "ended": ended.pid}
    for i, pid in enumerate(owners.values()):
        folder = os.path.join(jobs, f"train-20260101-00000{i}-{pid}")
        os.makedirs(folder)
        os.utime(folder, (1e9 + i, 1e9 + i))
    # pid 1 (init: always running), with the "-2" a second folder of one second gets: kept.
    os.makedirs(os.path.join(jobs, "extend-20260101-000009-1-2"))
    P.prune_jobs(jobs, keep=0)
    left = sorted(os.listdir(jobs))
    bl.result(stage="prune", left=left, running=owners["running"])

    look_stage(S, args)
    linked_stage(S, args)

    # Blender 5.0: the Sequencer edits the workspace's sequencer scene, which may not be the
    # active scene. The add-on follows it (4.x has no such thing).
    if "sequencer_scene" not in bpy.types.WorkSpace.bl_rna.properties:
        bl.result(stage="sequencer_scene", supported=False)
        return
    edit = bpy.data.scenes.new("Edit")
    shot = bl.strips_of(edit.sequence_editor_create()).new_image(
        "shot", os.path.join(args.frames, "frame_0001.png"), 1, 1
    )
    for i in range(2, 6):
        shot.elements.append(f"frame_{i:04d}.png")
    edit.sequence_editor.active_strip = shot
    bpy.context.scene.sequence_editor.active_strip = None
    before = S.active_strip(bpy.context)
    bpy.context.workspace.sequencer_scene = edit
    bl.result(
        stage="sequencer_scene",
        supported=True,
        active_scene=bpy.context.scene.name,
        before=before.name if before else None,
        used=S.sequencer_scene(bpy.context).name,
        active=S.active_strip(bpy.context).name,
        train_poll=bpy.ops.fsgan.train_on_strip.poll(),
    )


bl.run(main)
