"""ComfyUI V3 nodes of the MIMO pack: thin wrappers over the ComfyUI-free ``models/`` library."""

from comfy_api.latest import ComfyExtension, io

from .body import MIMOBodyModelLoader
from .decompose.layers import MIMODecomposeVideo, MIMOInpaintScene, MIMOOcclusionLayer
from .decompose.track_depth import MIMOEstimateDepth, MIMOTrackHuman
from .generate.encode import MIMOIdentityEncode, MIMOSceneEncode
from .folders import register_folders
from .generate.loader import MIMOModelLoader
from .motion.files import MIMOLoadAMASS, MIMOLoadMixamo
from .motion.video import MIMOMotionFromVideo
from .recover_palette import MIMORecoverPalette
from .render import MIMORasterizeMotion
from .generate.repose import MIMOCanonicalRepose
from .generate.sampler import MIMOSampler
from .composite.template import MIMOComposite, MIMOLoadTemplate, MIMOPlanROI, MIMOSaveTemplate

NODES = [MIMOModelLoader, MIMOIdentityEncode, MIMOSceneEncode, MIMOSampler, MIMOBodyModelLoader,
         MIMOLoadAMASS, MIMOLoadMixamo, MIMORasterizeMotion]
NODES += [MIMOLoadTemplate, MIMOSaveTemplate, MIMOPlanROI, MIMOComposite]
NODES.append(MIMOMotionFromVideo)
NODES.append(MIMORecoverPalette)
NODES.append(MIMOCanonicalRepose)
NODES += [MIMOOcclusionLayer, MIMOInpaintScene, MIMODecomposeVideo]
NODES += [MIMOTrackHuman, MIMOEstimateDepth]


class MIMOExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_folders()  # before the schemas list the model files
        return NODES
