"""Write ``workflows/<name>.jpg`` (the template browser's thumbnails): each workflow as the
frontend draws it, in headless Chromium.

    python -m devtools.workflow_thumbnails
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from .browser import frontend_page, load_workflow
from .build_workflows import tiny_server
from .demo_assets import write_demo_assets

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "workflows"
SIZE = (640, 400)


def main() -> None:
    with tiny_server() as server:
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
