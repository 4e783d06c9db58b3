"""ComfyUI V3 nodes of the MIMO pack (thin wrappers over ``models/``)."""

from comfy_api.latest import ComfyExtension, io


class MIMOExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []
