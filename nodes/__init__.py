"""ComfyUI V3 nodes of the MIMO pack: thin wrappers over the ComfyUI-free ``models/`` library."""

from comfy_api.latest import ComfyExtension, io

from .body import MIMOBodyModelLoader
from .encode import MIMOIdentityEncode, MIMOSceneEncode
from .folders import register_folders
from .loader import MIMOModelLoader
from .motion import MIMOLoadAMASS, MIMOLoadMixamo
from .render import MIMORasterizeMotion
from .sampler import MIMOSampler

NODES = [MIMOModelLoader, MIMOIdentityEncode, MIMOSceneEncode, MIMOSampler, MIMOBodyModelLoader,
         MIMOLoadAMASS, MIMOLoadMixamo, MIMORasterizeMotion]


class MIMOExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_folders()  # before the schemas list the model files
        return NODES
