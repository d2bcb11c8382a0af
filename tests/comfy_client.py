"""A small client for a real ComfyUI server in tests: start/stop it, HTTP JSON calls, websocket events.

Standard library only (the test machine need not have aiohttp or websocket packages). The
websocket reader implements just what ComfyUI's ``/ws`` sends to a client: unmasked text and binary
frames (no extensions); it never sends data frames itself.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PREVIEW_IMAGE = 1  # binary event: 4-byte event id, 4-byte image type (1 = JPEG, 2 = PNG), image bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyServer:
    """A ComfyUI process on loopback, with its own base directory (models, input, output, custom_nodes)."""

    comfyui_path: Path
    base_dir: Path
    python: str = sys.executable
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        frontend = self.base_dir / "empty_frontend"
        frontend.mkdir(parents=True, exist_ok=True)
        self.log_path = self.base_dir / "server.log"
        command = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base_dir), "--front-end-root", str(frontend), "--disable-api-nodes"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.comfyui_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.get("/system_stats")
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path and self.log_path.exists() else ""

    # --- HTTP -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:  # not JSON (e.g. an image from /view)
            return status, raw

    def get(self, path: str) -> object:
        status, payload = self.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}: {payload}")
        return payload

    def queue(self, prompt: dict, client_id: str) -> tuple[int, dict]:
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id})

    def websocket(self, client_id: str, timeout: float = 120.0) -> WebSocket:
        return WebSocket("127.0.0.1", self.port, f"/ws?clientId={client_id}", timeout)


class WebSocket:
    """Receive-only websocket client (RFC 6455 framing, server-to-client frames are unmasked)."""

    def __init__(self, host: str, port: int, path: str, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._read_some()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket upgrade refused: {head[:200]!r}")

    def _read_some(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("websocket closed by the server")
        return chunk

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self._read_some()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> tuple[str, object]:
        """("text", decoded JSON) or ("binary", bytes); control frames are skipped."""
        message, kind = b"", None
        while True:
            first, second = self._take(2)
            opcode, final = first & 0x0F, bool(first & 0x80)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._take(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._take(8))[0]
            mask = self._take(4) if second & 0x80 else None
            payload = self._take(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                raise ConnectionError("websocket closed by the server")
            if opcode in (9, 10):
                continue
            if opcode in (1, 2):
                kind = "text" if opcode == 1 else "binary"
            message += payload
            if final:
                return (kind, json.loads(message)) if kind == "text" else (kind, message)

    def close(self) -> None:
        self.sock.close()
