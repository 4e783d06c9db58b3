"""Write workflows in the frontend's saved format (litegraph, version 0.4) from a short description.

The widget order comes from the server's ``/object_info``, so the files match what the frontend
itself would save (positional ``widgets_values``, the extra value after seed widgets and the
upload button value of LoadImage-like nodes).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .workflow_to_api import WIDGET_TYPES, _spec, widget_slots


@dataclass
class Node:
    id: int
    type: str
    widgets: dict
    pos: tuple[float, float]
    title: str | None = None
    size: tuple[float, float] = (320, 160)
    links_in: dict = field(default_factory=dict)  # input name -> link id
    links_out: dict = field(default_factory=dict)  # output slot -> [link ids]


class WorkflowBuilder:
    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.notes: list[dict] = []

    def add(self, node_type: str, pos, title: str | None = None, size=(320, 160), **widgets) -> Node:
        if node_type not in self.info:
            raise KeyError(f"Unknown node type {node_type}")
        node = Node(len(self.nodes) + len(self.notes) + 1, node_type, widgets, tuple(pos), title, tuple(size))
        self.nodes.append(node)
        return node

    def note(self, text: str, pos, size=(420, 220), title="Read me"):
        nid = len(self.nodes) + len(self.notes) + 1
        self.notes.append({
            "id": nid, "type": "MarkdownNote", "pos": list(pos), "size": list(size), "flags": {}, "order": 0,
            "mode": 0, "inputs": [], "outputs": [], "title": title, "properties": {}, "widgets_values": [text],
            "color": "#432", "bgcolor": "#653",
        })

    def _output_types(self, node_type: str) -> list[str]:
        return list(self.info[node_type]["output"])

    def connect(self, src: Node, slot: int | str, dst: Node, input_name: str):
        if isinstance(slot, str):
            slot = list(self.info[src.type]["output_name"]).index(slot)
        link_id = len(self.links) + 1
        kind = self._output_types(src.type)[slot]
        self.links.append([link_id, src.id, slot, dst.id, None, kind])  # target slot filled in build()
        dst.links_in[input_name] = link_id
        src.links_out.setdefault(slot, []).append(link_id)

    def _inputs(self, node: Node) -> tuple[list[dict], list]:
        info = self.info[node.type]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
        inputs = []
        for name in [*order.get("required", []), *order.get("optional", [])]:
            kind, opts = _spec(specs[name])
            entry = {"name": name, "type": kind, "link": node.links_in.get(name)}
            if kind in WIDGET_TYPES and not opts.get("forceInput"):
                entry["widget"] = {"name": name}
            inputs.append(entry)
        slots = widget_slots(info)
        values = []
        for i, slot in enumerate(slots):
            if slot is None:  # UI-only value: seed control after an INT, else the upload button
                prev = slots[i - 1] if i else None
                values.append("fixed" if prev and _spec(specs[prev])[0] == "INT" else "image")
                continue
            kind, opts = _spec(specs[slot])
            default = opts.get("default")
            if default is None and kind == "COMBO":
                choices = specs[slot][0] if isinstance(specs[slot][0], list) else opts.get("options", [])
                default = choices[0] if choices else ""
            values.append(node.widgets.get(slot, default))
        unknown = set(node.widgets) - set(slots)
        if unknown:
            raise KeyError(f"{node.type} has no widgets {sorted(unknown)}")
        return inputs, values

    def build(self) -> dict:
        nodes_json = []
        by_id = {n.id: n for n in self.nodes}
        for n in self.nodes:
            inputs, values = self._inputs(n)
            for slot, entry in enumerate(inputs):
                if entry["link"] is not None:
                    for link in self.links:
                        if link[0] == entry["link"]:
                            link[4] = slot
            outputs = [
                {"name": name, "type": kind, "links": n.links_out.get(i, []), **({"slot_index": i} if n.links_out.get(i) else {})}
                for i, (name, kind) in enumerate(zip(self.info[n.type]["output_name"], self.info[n.type]["output"]))
            ]
            entry = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {},
                     "order": 0, "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": {"Node name for S&R": n.type}, "widgets_values": values}
            if n.title:
                entry["title"] = n.title
            nodes_json.append(entry)
        order = self._execution_order(by_id)
        for entry in nodes_json:
            entry["order"] = order[entry["id"]]
        for i, note in enumerate(self.notes):
            note["order"] = len(self.nodes) + i
        all_nodes = sorted(nodes_json + self.notes, key=lambda e: e["id"])
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "mimo:" + ",".join(n.type for n in self.nodes))),
            "revision": 0, "last_node_id": max(e["id"] for e in all_nodes), "last_link_id": len(self.links),
            "nodes": all_nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [40, 60]}, "frontendVersion": "1.32.9"}, "version": 0.4,
        }

    def _execution_order(self, by_id: dict) -> dict:
        deps = {n.id: {link[1] for link in self.links if link[3] == n.id} for n in self.nodes}
        order, done = {}, set()
        while len(done) < len(by_id):
            ready = sorted(i for i in by_id if i not in done and deps[i] <= done)
            for i in ready:
                order[i] = len(order)
                done.add(i)
        return order
