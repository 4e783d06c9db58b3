"""The pack's own socket types (prefixed, so they never collide with core or other packs)."""

from comfy_api.latest import io

MIMOModel = io.Custom("MIMO_MODEL")
MIMOIdentity = io.Custom("MIMO_IDENTITY")
MIMOScene = io.Custom("MIMO_SCENE")

CATEGORY = "MIMO"
MIMOBody = io.Custom("MIMO_BODY")
MIMOMotion = io.Custom("MIMO_MOTION")
MIMOMotionCodes = io.Custom("MIMO_MOTION_CODES")
MIMORoi = io.Custom("MIMO_ROI")
