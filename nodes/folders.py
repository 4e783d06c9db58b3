"""Every file or folder a MIMO node reads or writes, resolved in this one place.

A name picked in a node must resolve - after links (``realpath``) - inside the folders ComfyUI gives
for its kind: ComfyUI's input folder for motion files and templates, the registered model folders
(``extra_model_paths.yaml`` entries included) for model files, palettes and motion codes, the output
folder for what the pack writes. Absolute paths, ``..`` and links pointing elsewhere are refused with
a message naming the allowed folders; a missing file names every folder searched."""

import ntpath
import os

import folder_paths

from ..models.errors import MIMOInputError

MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors", ".bin", ".ckpt"}
PACK_FOLDERS = {
    "mimo": MODEL_EXTENSIONS | {".npy"},  # .npy: the official sdc_info.npy palette
    "mimo_codes": {".safetensors"},  # structured motion codes [vertices, C]
    "smpl": {".pkl", ".npz"},
    "sam2": {".pt", ".safetensors"},  # SAM 2 / 2.1 video predictor (MIMOTrackHuman)
    "depthanything": {".pth", ".safetensors"},  # Depth Anything V2 (MIMOEstimateDepth)
    "nlf": {".torchscript", ".pt"},  # NLF's TorchScript pose estimator (MIMOMotionFromVideo)
    "propainter": MODEL_EXTENSIONS,  # ProPainter's weights (MIMO Inpaint Scene, optional)
}
NONE = "none"
INPUT, OUTPUT = "input", "output"  # the two non-model kinds
SAM2_KEY, DEPTH_KEY, NLF_KEY, PROPAINTER_KEY = "sam2", "depthanything", "nlf", "propainter"
OUTPUT_TAG = " [output]"  # ComfyUI's annotation of a name in the output folder


class FolderError(MIMOInputError):
    """A file or folder name that points outside the folders MIMO may use for it."""


def register_folders() -> None:
    for key, exts in PACK_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, key)
        folder_paths.add_model_folder_path(key, default)
        paths, known = folder_paths.folder_names_and_paths[key]
        folder_paths.folder_names_and_paths[key] = (paths, set(known) | exts)
        try:
            os.makedirs(default, exist_ok=True)
        except OSError:
            pass


def file_options(key: str, with_none: bool = False) -> list[str]:
    try:
        names = folder_paths.get_filename_list(key)
    except KeyError:  # the folder is not registered yet (the pack registers its own before the schemas)
        names = []
    return names + [NONE] if with_none else (names or [NONE])


# ----------------------------------------------------------------------------- folders of a kind

def roots(kind: str) -> list[str]:
    """The folders ComfyUI gives for ``kind`` ('input', 'output' or a model folder key)."""
    if kind == INPUT:
        return [folder_paths.get_input_directory()]
    if kind == OUTPUT:
        return [folder_paths.get_output_directory()]
    try:
        return list(folder_paths.get_folder_paths(kind))
    except KeyError:
        return []


def describe(kind: str) -> str:
    """The folders of ``kind`` in words, for messages."""
    if kind in (INPUT, OUTPUT):
        return f"ComfyUI's {kind} folder ({roots(kind)[0]})"
    listed = "\n  ".join(roots(kind)) or "(none registered)"
    return f"the '{kind}' model folders:\n  {listed}\n"


def _fix(kind: str) -> str:
    if kind in (INPUT, OUTPUT):
        return f"copy it into ComfyUI's {kind} folder (subfolders are fine) and press R to refresh"
    return f"put the file in one of these folders (or add its folder under '{kind}:' in extra_model_paths.yaml) " \
           "and press R to refresh"


def _inside(path: str, root: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    try:
        return os.path.commonpath([real, base]) == base
    except ValueError:  # another drive (Windows)
        return False


def is_inside(path: str, kind: str) -> bool:
    return any(_inside(path, r) for r in roots(kind))


def relative(name: str, kind: str, what: str) -> str:
    """``name`` as a plain relative path, or a FolderError saying why it is not one."""
    reason = None
    if "\0" in name:
        reason = "it holds a NUL character"
    elif os.path.isabs(name) or ntpath.isabs(name) or ntpath.splitdrive(name)[0]:
        reason = "it is an absolute path"
    elif ".." in name.replace("\\", "/").split("/"):
        reason = "its '..' leaves the folder"
    if reason:
        raise FolderError(f"{what} '{name}' is refused: {reason}. MIMO reads it only from {describe(kind)}. "
                          f"Give a name relative to that folder: {_fix(kind)}.")
    return os.path.normpath(name.replace("\\", "/"))


def confine(path: str, kind: str, what: str, name: str | None = None) -> str:
    """``path`` if it resolves inside the folders of ``kind``; a FolderError naming them otherwise."""
    if not is_inside(path, kind):
        shown = name if name is not None else path
        raise FolderError(f"{what} '{shown}' is refused: it is a link to {os.path.realpath(path)}, outside "
                          f"{describe(kind)}. MIMO does not follow links out of its folders: {_fix(kind)} "
                          "(a copy, not a link).")
    return path


def _missing(kind: str, name: str, what: str, hint: str = "") -> FileNotFoundError:
    shown = name if name and name != NONE else "(none selected)"
    where = describe(kind).rstrip("\n")
    return FileNotFoundError(f"{what} file '{shown}' was not found in {where}\n{_fix(kind).capitalize()}."
                             + (f"\n{hint}" if hint else ""))


def resolve(key: str, name: str, what: str, hint: str = "") -> str:
    """Full path of a file of ``key`` (a model folder key, 'input' or 'output'), confined to its folders;
    a FileNotFoundError naming every folder searched when it is in none of them."""
    if not name or name == NONE:
        raise _missing(key, name, what, hint)
    rel = relative(name, key, what)
    for root in roots(key):
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            return confine(path, key, what, name)
        if os.path.lexists(path) and os.path.islink(path):  # a link to nothing: keep looking, then say so
            hint = (hint + "\n" if hint else "") + f"('{path}' is a link to a file that does not exist.)"
    raise _missing(key, name, what, hint)


def resolve_folder(kind: str, name: str, what: str) -> str:
    """Full path of a folder of ``kind`` (input/output), confined like ``resolve``; every entry in it
    must resolve inside too (a template's videos). FileNotFoundError when it is not there."""
    rel = relative(name, kind, what)
    for root in roots(kind):
        path = os.path.join(root, rel)
        if os.path.isdir(path):
            confine(path, kind, what, name)
            for entry in sorted(os.listdir(path)):
                confine(os.path.join(path, entry), kind, f"{what} file", f"{name}/{entry}")
            return path
    raise FileNotFoundError(f"{what} folder '{name}' was not found in {describe(kind).rstrip()}. "
                            f"{_fix(kind).capitalize()}.")


def check(kind: str, name: str, what: str, exts: tuple = (), folder: bool = False):
    """``validate_inputs`` answer for a name of ``kind``: True, or the message saying what is wrong."""
    if not name or name == NONE:
        return f"No {what} chosen: {_fix(kind)}."
    if exts and not folder and not name.lower().endswith(exts):
        return f"'{name}' is not a {what} (expected {' or '.join(exts)})."
    try:
        (resolve_folder if folder else resolve)(kind, name, what)
    except (FolderError, FileNotFoundError) as e:
        return str(e)
    return True


def split_annotation(name: str, default: str = INPUT) -> tuple[str, str]:
    """(kind, plain name) of a name that may end in ComfyUI's ' [output]' tag."""
    if name.endswith(OUTPUT_TAG):
        return OUTPUT, name[: -len(OUTPUT_TAG)]
    return default, name


def model_folder(key: str) -> str:
    """The first existing folder of model key ``key`` (its default when none exists yet)."""
    for path in roots(key):
        if os.path.isdir(path):
            return path
    return os.path.join(folder_paths.models_dir, key)


def writable(kind: str, name: str, what: str) -> str:
    """Where to write ``name`` (a plain relative name) in the first folder of ``kind``; refused
    when an existing part of it links out of that folder."""
    rel = relative(name, kind, what)
    root = model_folder(kind) if kind not in (INPUT, OUTPUT) else roots(kind)[0]
    path = os.path.join(root, rel)
    probe = path
    while not os.path.lexists(probe) and probe != root:  # the deepest part that exists already
        probe = os.path.dirname(probe)
    if not _inside(probe, root):
        raise FolderError(f"{what} '{name}' is refused: '{probe}' links to {os.path.realpath(probe)}, outside "
                          f"{describe(kind).rstrip()}. Choose another name, or remove the link.")
    return path


def input_files(exts: tuple, skip=lambda name: False) -> list[str]:
    """Files under ComfyUI's input folder with these extensions, as 'sub/dir/name.ext' (links that
    point out of the folder are left out: they would be refused)."""
    root = folder_paths.get_input_directory()
    out, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or not _inside(folder, root):  # a link cycle, or a link out of input/
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            path = os.path.join(folder, f)
            if f.lower().endswith(exts) and not skip(f) and _inside(path, root):
                out.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(out)
