"""Every shipped workflow loads in the real ComfyUI frontend (headless Debian Chromium driven by
Playwright) with no missing node type; a screenshot of each is kept in test-artifacts/browser/."""

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy
REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("MIMO_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = ("() => !!(window.app?.graph && window.app?.canvas && window.comfyAPI "
         "&& window.LiteGraph?.registered_node_types?.['MIMOSampler'])")


@pytest.fixture(scope="module")
def page(comfy_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see requirements-test.txt)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (CI does), or set MIMO_CHROMIUM.")
    from mimo_pack.devtools.demo_assets import write_demo_assets

    write_demo_assets(comfy_server.input_dir)
    comfy_server.request("POST", "/settings/Comfy.TutorialCompleted", True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.add_init_script("localStorage.setItem('vueNodesBannerDismissed','true')")
        tab = context.new_page()
        tab.goto(comfy_server.url, wait_until="domcontentloaded")
        tab.wait_for_function(READY, timeout=120_000)
        yield tab
        browser.close()


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_nodes(page, workflow):
    data = json.loads(workflow.read_text())
    missing = page.evaluate(
        """async (wf) => {
            await window.app.loadGraphData(wf, true, true, null, {showMissingNodesDialog: false});
            await new Promise(r => setTimeout(r, 500));
            const types = window.app.graph.nodes.map(n => n.type);
            return {types, missing: types.filter(t => !window.LiteGraph.registered_node_types[t])};
        }""", data)
    page.screenshot(path=str(ARTIFACTS / f"{workflow.stem}.png"))
    assert not missing["missing"], f"{workflow.name}: missing node types {missing['missing']}"
    assert len(missing["types"]) == len(data["nodes"])
    dialog = page.locator(".p-dialog:has-text('missing nodes')")
    assert dialog.count() == 0


def test_template_browser_lists_the_workflows(comfy_server):
    listing = comfy_server.request("GET", "/api/workflow_templates")
    ours = next((names for pack, names in listing.items() if "MIMO" in pack), None)
    assert ours is not None, listing
    assert sorted(ours) == sorted(p.stem for p in WORKFLOWS)
