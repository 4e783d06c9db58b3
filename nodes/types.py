"""The pack's own socket types (prefixed, so they never collide with core or other packs)."""

from comfy_api.latest import io

MIMOModel = io.Custom("MIMO_MODEL")
MIMOIdentity = io.Custom("MIMO_IDENTITY")
MIMOScene = io.Custom("MIMO_SCENE")

# Node menu groups, one per MIMO stage.
CATEGORY_MODEL = "MIMO/model"
CATEGORY_MOTION = "MIMO/motion"
CATEGORY_DECOMPOSE = "MIMO/decompose"
CATEGORY_GENERATE = "MIMO/generate"
CATEGORY_COMPOSITE = "MIMO/composite"
MIMOBody = io.Custom("MIMO_BODY")
MIMOMotion = io.Custom("MIMO_MOTION")
MIMOMotionCodes = io.Custom("MIMO_MOTION_CODES")
MIMORoi = io.Custom("MIMO_ROI")
