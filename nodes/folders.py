"""Model folders the pack reads, registered with ComfyUI (extra_model_paths.yaml entries win)."""

import os

import folder_paths

MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors", ".bin", ".ckpt"}
PACK_FOLDERS = {
    "mimo": MODEL_EXTENSIONS | {".npy"},  # .npy: the official sdc_info.npy palette
    "mimo_codes": {".safetensors"},  # structured motion codes [vertices, C]
    "smpl": {".pkl", ".npz"},
    "sam2": {".pt", ".safetensors"},  # SAM 2 / 2.1 video predictor (MIMOTrackHuman)
    "depthanything": {".pth", ".safetensors"},  # Depth Anything V2 (MIMOEstimateDepth)
    "nlf": {".torchscript", ".pt"},  # NLF's TorchScript pose estimator (MIMOMotionFromVideo)
}
NONE = "none"


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


def resolve(key: str, name: str, what: str) -> str:
    """Full path of a model file, or an error naming the file and every folder searched."""
    path = folder_paths.get_full_path(key, name) if name and name != NONE else None
    if path is None:
        folders = "\n  ".join(folder_paths.get_folder_paths(key))
        shown = name if name and name != NONE else "(none selected)"
        raise FileNotFoundError(
            f"{what} file '{shown}' was not found in the '{key}' model folders:\n  {folders}\n"
            f"Put the file in one of these folders (or add one in extra_model_paths.yaml) and refresh."
        )
    return path
