"""The registry metadata (pyproject.toml) agrees with requirements.txt and follows the Comfy
Registry rules (docs.comfy.org/registry/specifications); the pack icon is a real, small SVG."""

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from packaging.requirements import Requirement  # comes with pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
ICON_URL_PREFIX = "https://raw.githubusercontent.com/"


def requirement_lines(path):
    """The requirements of a pip requirements file (comments and blank lines dropped)."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"{path.name}: option lines are not expected: {line!r}"
            out.append(line)
    return out


def normalized(specs):
    """{name: (extras, specifier, marker)} with PEP 503 names, so spelling differences do not count."""
    out = {}
    for spec in specs:
        r = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", r.name).lower()
        assert name not in out, f"{name} listed twice"
        out[name] = (tuple(sorted(r.extras)), str(r.specifier), str(r.marker or ""))
    return out


def test_pyproject_dependencies_equal_requirements_txt():
    req = normalized(requirement_lines(REPO_ROOT / "requirements.txt"))
    deps = normalized(PYPROJECT["project"]["dependencies"])
    assert deps == req, (f"pyproject.toml [project].dependencies and requirements.txt differ: "
                         f"only in pyproject {sorted(set(deps) - set(req))}, only in requirements "
                         f"{sorted(set(req) - set(deps))}, different pins "
                         f"{sorted(k for k in set(deps) & set(req) if deps[k] != req[k])}")
    assert "torch" not in deps and "torchvision" not in deps  # ComfyUI users keep theirs


def test_requirement_parser_sees_differences():
    assert normalized(["opencv_python_headless"]) == normalized(["opencv-python-headless"])
    assert normalized(["ufbx==0.0.5"]) != normalized(["ufbx"])


def test_registry_fields():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    name = project["name"]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and len(name) < 100, name
    assert "comfyui" not in name.lower(), f"registry name {name!r}: the registry asks for no 'ComfyUI' in it"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), project["version"]
    assert project["license"] == {"file": "LICENSE"} and (REPO_ROOT / "LICENSE").is_file()
    assert project["urls"]["Repository"].startswith("https://")
    assert comfy["DisplayName"] == "MIMO"
    assert comfy["PublisherId"] and comfy["requires-comfyui"].startswith(">=")


def test_icon_is_a_small_svg_in_the_repository():
    icon = PYPROJECT["tool"]["comfy"]["Icon"]
    assert icon.startswith(ICON_URL_PREFIX), icon
    # raw.githubusercontent.com/<owner>/<repo>/<branch>/<path>: the file must be in this repository
    owner_repo = "/".join(icon[len(ICON_URL_PREFIX):].split("/")[:2])
    assert PYPROJECT["project"]["urls"]["Repository"].rstrip("/").endswith(owner_repo), icon
    path = REPO_ROOT / "/".join(icon[len(ICON_URL_PREFIX):].split("/")[3:])
    assert path.is_file(), f"Icon {icon} points at {path}, which is missing"
    assert path.stat().st_size < 8192
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    x, y, w, h = map(float, root.get("viewBox").split())
    assert w == h > 0  # square, as the registry shows it
