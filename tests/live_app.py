"""Start the real app (``python app.py``) as a subprocess for the browser and API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The decoding parameters of /caption and /ask as a program sends them: greedy, otherwise the UI's defaults.
API_DECODING = {
    "decoding": "Greedy", "beams": 3, "top_p": 0.9, "top_k": 50, "temperature": 1.0, "min_new_tokens": 1,
    "max_new_tokens": 20, "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "count": 1, "seed": 0,
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveApp:
    url: str
    process: subprocess.Popen

    def rss_mib(self) -> float:
        """The server process's resident memory now (Linux), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line in /proc status")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                return response.status == 200
        except OSError:
            return False


@contextmanager
def live_app(*flags: str, log: Path, timeout: float = 180.0, env: dict[str, str] | None = None):
    """Yield a :class:`LiveApp` for ``python app.py FLAGS`` once it answers; stop it afterwards.

    ``env`` adds to (or, with an empty value, removes from) the environment; by default the Hub is
    off (HF_HUB_OFFLINE=1).
    """
    port = free_port()
    full_env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in (env or {}).items():
        if value:
            full_env[key] = value
        else:
            full_env.pop(key, None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *flags],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = LiveApp(f"http://127.0.0.1:{port}/", process)
    try:
        deadline = time.monotonic() + timeout
        while not app.alive():
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with code {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer within {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def running_app(*flags: str, log: Path, timeout: float = 180.0):
    """Yield the URL of ``python app.py FLAGS`` once it answers; stop it afterwards."""
    with live_app(*flags, log=log, timeout=timeout) as app:
        yield app.url


@contextmanager
def demo_client(tmp_path_factory):
    """A ``gradio_client.Client`` on a fresh offline-demo app, for the API tests."""
    from gradio_client import Client

    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app("--offline-demo", log=log) as url:
        yield Client(url, verbose=False)


def rows(table) -> list[list]:
    """A Dataframe output's rows, whichever shape gradio_client gives it in."""
    return table["data"] if isinstance(table, dict) else table
