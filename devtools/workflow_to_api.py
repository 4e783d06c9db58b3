"""Convert a frontend workflow (UI/litegraph JSON, version 0.4) into an API prompt.

Follows what the 0.3.75 frontend (comfyui-frontend-package 1.32.9, ``graphToPrompt``) does:
widget values are positional, in the node definition's input order, with extra UI-only values
after "control after generate" widgets (INT: 1, COMBO: 2) and remote combos (refresh widgets),
and one for the upload button of media combos; Note/MarkdownNote/Reroute/PrimitiveNode are
virtual; muted nodes are dropped and bypassed nodes pass a matching-type input through.
Checked against the real frontend's graphToPrompt for every 0.3.75 core node. Not supported:
subgraphs, group nodes, client-side value rewriting (dynamic prompts, webcam/3D/audio widgets).
"""

from __future__ import annotations

UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MUTED, BYPASSED = 2, 4
# Input types the frontend draws as widgets (scripts/widgets.ts ComfyWidgets).
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "COLOR",
                "IMAGECOMPARE", "CHART", "GALLERIA", "TEXTAREA"}
SEED_NAMES = {"seed", "noise_seed"}  # legacy rule: INTs so named get a control widget
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
UI_VALUE = None  # a widgets_values slot that maps to no backend input


class WorkflowError(ValueError):
    pass


def _spec(spec) -> tuple[str, dict]:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    return ("COMBO" if isinstance(kind, list) else str(kind)), opts


def widget_slots(info: dict) -> list[str | None]:
    """Input names held by a node's positional ``widgets_values``; None marks a UI-only value."""
    inputs = info.get("input") or {}
    required, optional = inputs.get("required") or {}, inputs.get("optional") or {}
    order = info.get("input_order") or {}
    names = [n for n in order.get("required", []) if n in required]
    names += [n for n in order.get("optional", []) if n in optional and n not in names]
    names += [n for n in [*required, *optional] if n not in names]
    slots: list[str | None] = []
    upload, required_end = False, 0
    for name in names:
        kind, opts = _spec(required[name] if name in required else optional[name])
        kind = opts.get("widgetType") or kind
        if opts.get("forceInput") or kind not in WIDGET_TYPES:
            continue
        slots.append(name)
        control = opts.get("control_after_generate")
        if kind == "INT" and (control if control is not None else name in SEED_NAMES):
            slots.append(UI_VALUE)
        elif kind == "COMBO":
            remote = opts.get("remote") or {}
            if remote:  # auto-refresh toggle (+ refresh button)
                slots += [UI_VALUE] * (1 + bool(remote.get("refresh_button")))
            if control:
                slots += [UI_VALUE, UI_VALUE]  # control combo + filter list
        if name in required:
            upload = upload or (kind == "COMBO" and any(opts.get(f) is True for f in UPLOAD_FLAGS))
            required_end = len(slots)
    if upload:  # the frontend appends an "upload" button input (value "image") to `required`
        slots.insert(len(slots) if order else required_end, UI_VALUE)
    return slots


def missing_node_types(workflow: dict, object_info: dict) -> list[str]:
    """Node types of the workflow (whatever their mode) that the server does not know."""
    return sorted({n["type"] for n in workflow.get("nodes", [])
                   if n["type"] not in UI_ONLY and n["type"] not in object_info})


def _compatible(a, b) -> bool:
    """LiteGraph.isValidConnection."""
    if not a or not b or a == b or a == "*" or b == "*":
        return True
    a, b = str(a).lower(), str(b).lower()
    return a == b or bool(set(a.split(",")) & set(b.split(",")))


def _links(workflow: dict) -> dict:
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):  # schema version 1
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"], link.get("type")]
        out[link[0]] = link
    return out


def _bypass_slot(node: dict, slot: int, want) -> int | None:
    """Input of a bypassed node that stands in for its output ``slot`` (ExecutableNodeDTO)."""
    inputs, outputs = node.get("inputs") or [], node.get("outputs") or []
    if not inputs:
        return None
    if want in (None, "", "*"):
        return slot if len(inputs) > slot else 0
    out_type = outputs[slot].get("type") if slot < len(outputs) else "*"
    if slot < len(inputs) and _compatible(inputs[slot].get("type"), out_type) and _compatible(inputs[slot].get("type"), want):
        return slot
    for i, inp in enumerate(inputs):
        if inp.get("type") == want:
            return i
    for i, inp in enumerate(inputs):
        if _compatible(inp.get("type"), out_type) and _compatible(inp.get("type"), want):
            return i
    return None


def _resolve(nodes: dict, links: dict, link_id, want, seen: set):
    """Follow a link through Reroutes and bypassed nodes: ("link", [id, slot]), ("value", v) or None."""
    if link_id is None or link_id not in links:
        return None
    if link_id in seen:
        raise WorkflowError(f"circular link {link_id}")
    seen.add(link_id)
    _, origin_id, slot = links[link_id][:3]
    origin = nodes.get(str(origin_id))
    if origin is None:
        return None
    if origin["type"] == "PrimitiveNode":
        values = origin.get("widgets_values") or []
        return ("value", values[0]) if values else None
    if origin["type"] in UI_ONLY:  # Reroute: pass its input through
        inputs = origin.get("inputs") or []
        return _resolve(nodes, links, inputs[0].get("link"), want, seen) if inputs else None
    if origin.get("mode") == BYPASSED:
        i = _bypass_slot(origin, slot, want)
        return None if i is None else _resolve(nodes, links, origin["inputs"][i].get("link"), want, seen)
    return ("link", [str(origin_id), int(slot)])


def _wrap(value):
    return {"__value__": value} if isinstance(value, list) else value  # lists mean links


def _widget_inputs(nid: str, node: dict, info: dict, strict: bool) -> dict:
    values = node.get("widgets_values")
    if values is None:
        values = []
    slots = widget_slots(info)
    if isinstance(values, dict):
        return {k: _wrap(v) for k, v in values.items() if k in slots}
    if strict and len(values) != len(slots):
        raise WorkflowError(f"node {nid} ({node['type']}): widgets_values has {len(values)} values, "
                            f"expected {len(slots)} for {slots} (None = UI-only value): {values}")
    return {name: _wrap(v) for name, v in zip(slots, values) if name is not None}


def to_api(workflow: dict, object_info: dict, strict: bool = True) -> dict:
    """UI workflow -> ``{node_id: {"class_type", "inputs", "_meta"}}``. With ``strict``, a
    widgets_values list whose length does not fit the node definition is an error."""
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported")
    nodes = {str(n["id"]): n for n in workflow.get("nodes", [])}
    missing = [f"{nid} ({n['type']})" for nid, n in nodes.items()
               if n["type"] not in UI_ONLY and n["type"] not in object_info]
    if missing:
        raise WorkflowError(f"node types unknown to the server: {', '.join(missing)}")
    links = _links(workflow)
    prompt = {}
    for nid, node in nodes.items():
        if node["type"] in UI_ONLY or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        info = object_info[node["type"]]
        inputs = _widget_inputs(nid, node, info, strict)
        for inp in node.get("inputs") or []:
            found = _resolve(nodes, links, inp.get("link"), inp.get("type"), set())
            if found is not None:
                inputs[inp["name"]] = _wrap(found[1]) if found[0] == "value" else found[1]
        title = node.get("title") or info.get("display_name") or node["type"]
        prompt[nid] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": title}}
    for entry in prompt.values():  # inputs fed by dropped (muted) nodes disappear
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt
