"""The answer cache: validated answers on disk, one JSON file per request, content-addressed.

A request's key is the SHA-256 of what decides its answer (model, prompt version, messages,
schema, temperature and seed), so a re-run asks only for crystals that failed or changed.
Failures are never stored. The folder also remembers, for a day, which pictures a server
refused (:meth:`AnswerCache.refused_inputs`), so that a re-run against a text-only server
starts at the text it accepts. API keys are never written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .prompt import PROMPT_VERSION
from .schema import validate_answer

log = logging.getLogger(__name__)

SEED = 0
#: how long a server's refusal of pictures is remembered, in seconds
REFUSAL_MEMORY_S = 24 * 3600.0
_CAPABILITIES = "capabilities.json"


def default_cache_dir() -> Path:
    """Return the folder of the LLM answer cache.

    Returns
    -------
    pathlib.Path
        ``$NAPARI_ZONATION_CACHE_DIR`` when set, else a per-user cache folder
        (``platformdirs.user_cache_path("napari-zonation") / "llm"`` when platformdirs is
        installed, else ``$XDG_CACHE_HOME`` or ``~/.cache``, ``%LOCALAPPDATA%`` on Windows).
    """
    env = os.environ.get("NAPARI_ZONATION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        platformdirs = None
    if platformdirs is not None:
        return Path(platformdirs.user_cache_path("napari-zonation")) / "llm"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-zonation" / "llm"


def cache_key(model: str, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of what decides an answer."""
    payload = {
        "model": model,
        "prompt_version": PROMPT_VERSION,
        "messages": messages,
        "schema": schema,
        "temperature": 0,
        "seed": SEED,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """Validated answers as ``<sha256>.json`` files in ``folder``; failures are never stored."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._warned = False

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.folder / f"{key}.json"

    def read(self, key: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored record of ``key`` (``answer``, ``inputs``, ``usage``, ...) when its
        answer is valid in ``schema``; None otherwise."""
        p = self.path(key)
        try:
            with open(p, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", p)
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        if validate_answer(data.get("answer"), schema):
            return None
        return data

    def write(
        self,
        key: str,
        model: str,
        label: int,
        answer: dict[str, Any],
        usage: Any,
        inputs: str,
    ) -> None:
        """Store one validated answer (atomically; a failure to write is logged once)."""
        record = {
            "key": key,
            "model": model,
            "prompt_version": PROMPT_VERSION,
            "label": label,
            "inputs": inputs,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "usage": usage,
            "answer": answer,
        }
        self._write_json(self.path(key), record)

    # ---- what a server refused -----------------------------------------------------------
    def refused_inputs(self, server: str, model: str) -> list[str]:
        """The inputs (``text+plot+crop``, ``text+plot``) ``server`` refused for ``model``
        within :data:`REFUSAL_MEMORY_S`."""
        entry = self._capabilities().get(_server_key(server, model))
        if not isinstance(entry, dict):
            return []
        if time.time() - float(entry.get("time", 0)) > REFUSAL_MEMORY_S:
            return []
        return [str(x) for x in entry.get("refused", [])]

    def remember_refusal(self, server: str, model: str, refused: list[str]) -> None:
        """Remember that ``server`` refused ``refused`` for ``model``."""
        caps = self._capabilities()
        caps[_server_key(server, model)] = {"refused": list(refused), "time": time.time()}
        self._write_json(self.folder / _CAPABILITIES, caps)

    def _capabilities(self) -> dict[str, Any]:
        try:
            with open(self.folder / _CAPABILITIES, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_json(self, path: Path, record: Any) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "cannot write the LLM cache in %s (%s); answers not cached", self.folder, exc
                )
                self._warned = True


def _server_key(server: str, model: str) -> str:
    return f"{server.rstrip('/')}|{model}"
