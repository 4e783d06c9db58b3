"""Shared fixtures. The repository is registered as the package ``mimo_pack`` so that tests can
``from mimo_pack.models import ...`` (the pack itself only uses relative imports)."""

import importlib.util
import os
from pathlib import Path

# Intel MKL's reproducible mode for the test session and every process it starts (ComfyUI servers, the
# Ray workers they start), set before anything calls MKL: by default MKL may round the same small
# matrix product differently in two processes (seen on an AVX-512/AMX Xeon: one product of identical
# 16x64 and 64x64 inputs differed by 5e-7), and tests compare the window-parallel sampler's workers
# with one device bit for bit.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

_spec = importlib.util.spec_from_file_location("_mimo_packload", Path(__file__).parent / "tools" / "packload.py")
packload = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packload)
packload.load_pack()


# ----------------------------------------------------------------------------- parity cases
# The recorded official runs: $MIMO_PARITY_DIR, else ../shared/parity beside the repository.
# Tests ask for them through ONE fixture; outside CI a missing case skips with the place searched,
# under CI=true it FAILS (CI always has the cases: a skip there would hide a broken checkout).
#
#   parity_dir         the folder of the cases (Path)
#   parity_case(name)  -> the case folder (holding case.json and case.safetensors)
#   parity_case_dir    a test taking this argument runs once per case found in parity_dir

import pytest  # noqa: E402

PARITY_DIR = (Path(os.environ["MIMO_PARITY_DIR"]) if os.environ.get("MIMO_PARITY_DIR")
              else packload.REPO_ROOT.parent / "shared" / "parity")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _parity_missing(what: str):
    message = (f"{what} (searched {PARITY_DIR}; set MIMO_PARITY_DIR to the folder holding case_a/, case_b/ "
               "with case.json and case.safetensors)")
    if _in_ci():
        pytest.fail("CI=true: " + message, pytrace=False)
    pytest.skip(message)


def _found_cases() -> list[Path]:
    if not PARITY_DIR.is_dir():
        return []
    return sorted(p for p in PARITY_DIR.iterdir() if (p / "case.json").is_file())


def _case_complete(case: Path) -> bool:
    return (case / "case.json").is_file() and (case / "case.safetensors").is_file()


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not _found_cases():
        _parity_missing("no parity cases found")
    return PARITY_DIR


@pytest.fixture(scope="session")
def parity_case():
    def get(name: str) -> Path:
        case = PARITY_DIR / name
        if not _case_complete(case):
            _parity_missing(f"parity case {name!r} not found")
        return case

    return get


NO_CASES = "no-parity-cases"


def pytest_generate_tests(metafunc):
    if "parity_case_dir" in metafunc.fixturenames:
        names = [p.name for p in _found_cases()] or [NO_CASES]
        metafunc.parametrize("parity_case_dir", names, indirect=True)


@pytest.fixture
def parity_case_dir(request, parity_case) -> Path:
    if request.param == NO_CASES:
        _parity_missing("no parity cases found")
    return parity_case(request.param)


# ----------------------------------------------------------------------------- real ComfyUI
# Fixtures for tests marked ``@pytest.mark.comfy`` (ComfyUI 0.3.75 is provisioned on first use
# into $MIMO_COMFYUI_HOME or ~/.cache/mimo-comfyui/0.3.75; deselect with ``-m "not comfy"``).
#
#   comfy_models_dir        session dir mapped into ComfyUI: each subfolder <key>/ is the model
#                           folder key (mimo/, vae/, clip_vision/, ... exist from the start).
#   comfy_models_populated  hook run BEFORE the server starts: write model files here (replace
#                           or extend this fixture). Files added later into an existing key
#                           folder are still seen (ComfyUI rescans), new keys are not.
#   comfy_server            the running devtools.comfy_host.ComfyServer (one per session).
#   comfy_run_workflow      run(workflow: dict | path, timeout=300, check=True) -> Result with
#                           .ok, .status, .error, .outputs, .files (UI workflow -> to_api -> run).

import json  # noqa: E402

from mimo_pack.devtools import comfy_host, workflow_to_api  # noqa: E402

REPO_ROOT = packload.REPO_ROOT
# node ids that must be in /object_info for the server to count as started
COMFY_EXPECTED_NODES = ("MIMOModelLoader", "MIMOIdentityEncode", "MIMOSceneEncode", "MIMOSampler")


@pytest.fixture(scope="session")
def comfy_models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_models")
    for key in comfy_host.MODEL_KEYS:
        (root / key).mkdir()
    return root


@pytest.fixture(scope="session")
def comfy_models_populated(comfy_models_dir):
    """Hook: the tiny MIMO weights (models/generate/tiny.py) in models/mimo, vae, clip_vision; the tiny SAM 2 and
    Depth Anything files in models/sam2, depthanything; the scripted NLF stand-in (devtools/nlf_standin.py,
    not NLF) in models/nlf."""
    from mimo_pack.devtools.nlf_standin import STANDIN_NAME, write_nlf_standin
    from mimo_pack.models.generate import tiny
    from mimo_pack.models.decompose.tiny_models import write_tiny_decompose_weights

    tiny.write_tiny_weights(comfy_models_dir)
    write_tiny_decompose_weights(comfy_models_dir)
    write_nlf_standin(comfy_models_dir / "nlf" / STANDIN_NAME)
    return comfy_models_dir


@pytest.fixture(scope="session")
def comfy_server(comfy_models_populated, tmp_path_factory):
    comfy_dir = comfy_host.provision_comfyui()
    # Latent previews on, so the samplers' preview path runs in the tests too.
    server = comfy_host.ComfyServer(comfy_dir, REPO_ROOT, models_dir=comfy_models_populated,
                                    extra_args=("--preview-method", "latent2rgb"),
                                    run_dir=tmp_path_factory.mktemp("comfy_run"),
                                    expected_nodes=COMFY_EXPECTED_NODES)
    with server:
        yield server


@pytest.fixture(scope="session")
def comfy_run_workflow(comfy_server):
    def run(workflow, timeout: float = 300.0, check: bool = True):
        if not isinstance(workflow, dict):
            workflow = json.loads(Path(workflow).read_text())
        prompt = workflow_to_api.to_api(workflow, comfy_server.object_info())
        return comfy_server.run(prompt, timeout=timeout, check=check)

    return run
