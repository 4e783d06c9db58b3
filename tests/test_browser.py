"""Every shipped workflow loads in the real ComfyUI frontend (headless Debian Chromium driven by
Playwright) with no missing node type, in both the frontend ComfyUI 0.3.75 pins and the newest one
(devtools/frontends.py, through ``--front-end-root``), and converts to the same API prompt in both
(and to what devtools/workflow_to_api.py gives). Screenshots are kept in test-artifacts/browser/.
One server and one page per frontend, one Chromium for both."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy
REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
ARTIFACTS = REPO / "test-artifacts" / "browser"
FRONTENDS = ("pinned", "newest")


@pytest.fixture(scope="module")
def newest_server(comfy_models_populated, tmp_path_factory):
    """A second server (same ComfyUI, same models) serving the newest frontend's static files."""
    from mimo_pack.devtools import comfy_host, frontends

    server = comfy_host.ComfyServer(comfy_host.provision_comfyui(), REPO, models_dir=comfy_models_populated,
                                    extra_args=frontends.server_args(frontends.NEWEST_VERSION),
                                    run_dir=tmp_path_factory.mktemp("comfy_run_newest_frontend"),
                                    expected_nodes=("MIMOSampler",))
    with server:
        yield server


@pytest.fixture(scope="module")
def servers(comfy_server, newest_server):
    return {"pinned": comfy_server, "newest": newest_server}


@pytest.fixture(scope="module")
def pages(servers):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (see requirements-test.txt)")
    from mimo_pack.devtools.browser import chromium, open_frontend
    from mimo_pack.devtools.demo_assets import write_demo_assets

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        tabs = {}
        for name, server in servers.items():
            write_demo_assets(server.input_dir)
            tabs[name] = open_frontend(browser, server)
        yield tabs


_LOADED: dict = {}


def loaded(pages, frontend: str, workflow: Path) -> dict:
    """Load ``workflow`` into that frontend once: {'types', 'missing', 'dialogs', 'prompt'}."""
    key = (frontend, workflow.name)
    if key not in _LOADED:
        from mimo_pack.devtools.browser import frontend_version, graph_to_prompt, load_workflow

        page = pages[frontend]
        result = load_workflow(page, json.loads(workflow.read_text()))
        result["dialogs"] = page.locator(".p-dialog:has-text('missing nodes')").count()
        result["prompt"] = graph_to_prompt(page)
        suffix = "" if frontend == "pinned" else f".frontend-{frontend_version(page)}"
        page.screenshot(path=str(ARTIFACTS / f"{workflow.stem}{suffix}.png"))
        _LOADED[key] = result
    return _LOADED[key]


def test_each_server_serves_its_frontend(pages):
    from mimo_pack.devtools import frontends
    from mimo_pack.devtools.browser import frontend_version

    assert frontend_version(pages["pinned"]) == frontends.pinned_version()
    assert frontend_version(pages["newest"]) == frontends.NEWEST_VERSION != frontends.pinned_version()


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_nodes(pages, frontend, workflow):
    data = json.loads(workflow.read_text())
    result = loaded(pages, frontend, workflow)
    assert not result["missing"], f"{workflow.name} ({frontend} frontend): missing node types {result['missing']}"
    assert len(result["types"]) == len(data["nodes"])
    assert result["dialogs"] == 0


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_both_frontends_give_the_same_api_prompt(pages, servers, workflow):
    from mimo_pack.devtools.workflow_to_api import to_api

    pinned, newest = (loaded(pages, f, workflow)["prompt"] for f in FRONTENDS)
    assert pinned, f"{workflow.name}: the pinned frontend gave an empty prompt"
    differ = sorted(k for k in set(pinned) | set(newest) if pinned.get(k) != newest.get(k))
    assert not differ, (f"{workflow.name}: nodes {differ} differ between frontends: "
                        f"pinned {[pinned.get(k) for k in differ]}, newest {[newest.get(k) for k in differ]}")
    info = servers["pinned"].object_info()
    ours = to_api(json.loads(workflow.read_text()), info)

    def declared(prompt):  # the inputs the server reads (the frontend also sends UI-only widgets,
        out = {}  # e.g. LoadVideo's 'video-preview', which the server ignores)
        for k, v in prompt.items():
            spec = info[v["class_type"]]["input"]
            names = {*spec.get("required", {}), *spec.get("optional", {})}
            out[k] = (v["class_type"], {n: x for n, x in v["inputs"].items() if n in names})
        return out

    assert declared(pinned) == declared(ours)
    assert all(set(ours[k]["inputs"]) <= set(pinned[k]["inputs"]) for k in ours)


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
