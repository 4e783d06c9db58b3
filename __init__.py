"""MIMO for ComfyUI: controllable character video synthesis (Men et al., CVPR 2025).

Importing this package never imports ComfyUI: the node layer is loaded when ComfyUI calls
``comfy_entrypoint``, so ``models/`` stays usable (and testable) on its own.
"""


async def comfy_entrypoint():
    from .nodes import MIMOExtension

    return MIMOExtension()
