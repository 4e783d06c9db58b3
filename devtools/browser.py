"""Headless Debian Chromium driven by Playwright (no downloaded browser) on a ComfyUI server's frontend."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("MIMO_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = ("() => !!(window.app?.graph && window.app?.canvas && window.comfyAPI "
         "&& window.LiteGraph?.registered_node_types?.['MIMOSampler'])")
LOAD = """async (wf) => {
    await window.app.loadGraphData(wf, true, true, null, {showMissingNodesDialog: false});
    await new Promise(r => setTimeout(r, 500));
    const types = window.app.graph.nodes.map(n => n.type);
    return {types, missing: types.filter(t => !window.LiteGraph.registered_node_types[t])};
}"""


TO_PROMPT = "async () => (await window.app.graphToPrompt()).output"
VERSION = "() => window.__COMFYUI_FRONTEND_VERSION__ ?? null"


@contextmanager
def chromium():
    """One headless Chromium (Debian's, driven by Playwright) for any number of pages."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: apt-get install chromium, or set MIMO_CHROMIUM.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_frontend(browser, server, viewport=(1600, 1000)):
    """A new page (own context) with the server's frontend loaded and our nodes registered."""
    server.request("POST", "/settings/Comfy.TutorialCompleted", True)  # no first-run dialog over the canvas
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.add_init_script("localStorage.setItem('vueNodesBannerDismissed','true')")
    page = context.new_page()
    page.goto(server.url, wait_until="domcontentloaded")
    page.wait_for_function(READY, timeout=120_000)
    return page


@contextmanager
def frontend_page(server, viewport=(1600, 1000)):
    """A page with the server's frontend loaded and our nodes registered."""
    with chromium() as browser:
        yield open_frontend(browser, server, viewport)


def load_workflow(page, workflow: dict) -> dict:
    """Loads a UI-format workflow; returns {'types': [...], 'missing': [...]}."""
    return page.evaluate(LOAD, workflow)


def graph_to_prompt(page) -> dict:
    """The API prompt the frontend would queue for the loaded graph (``app.graphToPrompt().output``)."""
    return page.evaluate(TO_PROMPT)


def frontend_version(page) -> str | None:
    return page.evaluate(VERSION)
