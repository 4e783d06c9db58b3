"""Write ``workflows/<name>.jpg`` (the template browser's thumbnails): each workflow as the
frontend draws it, in headless Chromium.

    python -m devtools.workflow_thumbnails
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from PIL import Image

from .browser import frontend_page, load_workflow
from .comfy_host import ComfyServer, provision_comfyui
from .demo_assets import write_demo_assets
from .run_demo import load_pack

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "workflows"
SIZE = (640, 400)


def main() -> None:
    pack = load_pack()
    tiny = __import__(f"{pack.__name__}.models.tiny", fromlist=["write_tiny_weights"])
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        tiny.write_tiny_weights(models)
        with ComfyServer(provision_comfyui(), REPO_ROOT, models_dir=models, run_dir=Path(tmp) / "run") as server:
            write_demo_assets(server.input_dir)
            with frontend_page(server, viewport=(2600, 1500)) as page:
                for path in sorted(WORKFLOWS.glob("*.json")):
                    load_workflow(page, json.loads(path.read_text()))
                    page.evaluate("() => { const ds = window.app.canvas.ds; ds.scale = 0.75; ds.offset = [40, 60];"
                                  " window.app.canvas.setDirty(true, true); }")
                    page.wait_for_timeout(400)
                    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": 50, "y": 40, "width": 1520, "height": 950})))
                    shot.convert("RGB").resize(SIZE, Image.LANCZOS).save(path.with_suffix(".jpg"), quality=85)
                    print(path.with_suffix(".jpg"))


if __name__ == "__main__":
    main()
