"""The OpenAI-compatible test server (tests/agents/llm_server.py) with a script: the n-th chat
request is answered with ``script[n]`` (the last entry repeats), or — ``honour_schema`` — with a
JSON instance of the ``response_format`` schema the request carried, as a provider with
structured outputs would."""

from __future__ import annotations

import json

from kai_platform.llm.structured import instance_of
from tests.agents.llm_server import LLMServer


class ScriptedLLMServer(LLMServer):
    def __init__(self):
        super().__init__()
        self.script: list[str] = []
        self.honour_schema = False

    @property
    def chats(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    @property
    def reply(self) -> str:
        chats = self.chats
        last = chats[-1] if chats else {}
        fmt = last.get("response_format") or {}
        if self.honour_schema and fmt.get("type") == "json_schema":
            return json.dumps(instance_of(fmt["json_schema"]["schema"]))
        if self.script:
            return self.script[min(len(chats), len(self.script)) - 1] if chats else self.script[0]
        return "Hello from the local server"

    @reply.setter
    def reply(self, value):  # the base class sets a default
        pass
