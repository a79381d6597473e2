"""A kernel's websocket as a script uses it, no browser: Jupyter's JSON protocol, the widgets
the kernel shows learned from ``comm_info_request`` and their state, and what their front
ends send (a click, a state update)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid


def _shell_message(msg_type: str, content: dict) -> str:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": SESSION,
              "username": "", "date": "2026-01-01T00:00:00Z", "version": "5.3"}  # fmt: skip
    return json.dumps({"header": header, "parent_header": {}, "metadata": {},
                       "content": content, "channel": "shell", "buffers": []})  # fmt: skip


SESSION = uuid.uuid4().hex


class KernelSocket:
    """A kernel's websocket as a script would use it (Jupyter's JSON protocol), learning the
    widgets the kernel shows and sending what their front ends send."""

    def __init__(self, connection):
        self.connection = connection
        self.states: dict[str, dict] = {}  # comm id -> the widget's state

    @classmethod
    async def open(cls, port: int, kernel: str, token: str | None = None, **headers: str):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        query = f"?session_id={SESSION}" + (f"&token={token}" if token else "")
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels{query}"
        request = HTTPRequest(url, headers={"Host": f"127.0.0.1:{port}", **headers},
                              connect_timeout=30)  # fmt: skip
        return cls(await websocket_connect(request))

    def send(self, msg_type: str, content: dict) -> None:
        self.connection.write_message(_shell_message(msg_type, content))

    def comm(self, comm_id: str, data: dict) -> None:
        self.send("comm_msg", {"comm_id": comm_id, "data": data})

    async def read(self, seconds: float) -> list[dict]:
        """What the kernel sends within ``seconds``; widget states kept up to date."""
        received = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.connection.read_message(), left)
            except asyncio.TimeoutError:
                break
            if raw is None:
                break
            message = json.loads(raw)
            received.append(message)
            content, kind = message.get("content", {}), message["header"]["msg_type"]
            data = content.get("data", {})
            if kind == "comm_open" or (kind == "comm_msg" and data.get("method") == "update"):
                self.states.setdefault(content["comm_id"], {}).update(data.get("state", {}))
            elif kind == "comm_info_reply":
                for comm_id in content.get("comms", {}):
                    if comm_id not in self.states:
                        self.states[comm_id] = {}
                        self.comm(comm_id, {"method": "request_state"})
        return received

    async def learn(self, until=None, timeout: float = 60) -> None:
        """Every widget the kernel shows, and its state; with ``until`` (a predicate of this
        socket), asked again until it holds (AssertionError after ``timeout`` s): a page
        renders its widgets one after the other, slower on a busy machine."""
        deadline = time.monotonic() + timeout
        while True:
            self.send("comm_info_request", {"target_name": "jupyter.widget"})
            await self.read(3 if until is None else 1)
            if until is None or until(self):
                return
            assert time.monotonic() < deadline, f"the page's widgets within {timeout} s"

    def buttons(self) -> dict[str, str]:
        return {comm_id: state.get("description", "") for comm_id, state in self.states.items()
                if state.get("_model_name") == "ButtonModel"}  # fmt: skip
