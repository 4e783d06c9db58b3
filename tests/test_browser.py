"""Every shipped workflow loads in the real ComfyUI frontend (headless Debian Chromium driven by
Playwright) with no missing node type; a screenshot of each is kept in test-artifacts/browser/."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy
REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
ARTIFACTS = REPO / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def page(comfy_server):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (see requirements-test.txt)")
    from mimo_pack.devtools.browser import frontend_page
    from mimo_pack.devtools.demo_assets import write_demo_assets

    write_demo_assets(comfy_server.input_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with frontend_page(comfy_server) as tab:
        yield tab


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_nodes(page, workflow):
    from mimo_pack.devtools.browser import load_workflow

    data = json.loads(workflow.read_text())
    loaded = load_workflow(page, data)
    page.screenshot(path=str(ARTIFACTS / f"{workflow.stem}.png"))
    assert not loaded["missing"], f"{workflow.name}: missing node types {loaded['missing']}"
    assert len(loaded["types"]) == len(data["nodes"])
    assert page.locator(".p-dialog:has-text('missing nodes')").count() == 0


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_a_thumbnail_and_notes(workflow):
    from PIL import Image

    thumb = workflow.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing: run python -m devtools.workflow_thumbnails"
    assert Image.open(thumb).size[0] >= 320
    notes = [n for n in json.loads(workflow.read_text())["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes and "models/" in notes[0]["widgets_values"][0]  # says which files go where


def test_template_browser_lists_the_workflows(comfy_server):
    listing = comfy_server.request("GET", "/api/workflow_templates")
    ours = next((names for pack, names in listing.items() if "MIMO" in pack), None)
    assert ours is not None, listing
    assert sorted(ours) == sorted(p.stem for p in WORKFLOWS)
