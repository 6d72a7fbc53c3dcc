"""A small local HTTP server speaking the OpenAI chat-completions API (with SSE streaming) and
the Anthropic Messages API, so the real SDKs are exercised end to end in tests."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _wait_for_close(conn, seconds: float) -> float | None:
    """Wait up to ``seconds`` for the client to close ``conn``; when it did, the time it was seen."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([conn], [], [], remaining)
        if readable:
            try:
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    return time.monotonic()
            except OSError:
                return time.monotonic()
            time.sleep(0.01)
    return None


class LLMServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.mode = "ok"  # ok | slow | hold | unauthorized | tool_call | no_usage
        self.delay = 0.0
        #: mode "hold": a request sends no byte back for ``delay`` s; ``holding`` is set when one
        #: arrives, and ``disconnects`` gets the time (monotonic) its client closed the connection
        self.holding = threading.Event()
        self.disconnects: list[float] = []
        self.reply = "Hello from the local server"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/redirect-to-loopback"):
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/secret")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._json(200, {"ok": True, "path": self.path})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(
                    {"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
                )
                if server.mode == "unauthorized":
                    return self._json(
                        401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
                    )
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "hold":
                    server.holding.set()
                    closed_at = _wait_for_close(self.connection, server.delay)
                    if closed_at is not None:
                        server.disconnects.append(closed_at)
                        self.close_connection = True
                        return
                if self.path.endswith("/chat/completions"):
                    return self._chat(body)
                if self.path.endswith("/messages"):
                    return self._anthropic(body)
                self._json(404, {"error": {"message": "no such route"}})

            def _sse(self, events):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for line in events:
                    self.wfile.write(line.encode())
                    self.wfile.flush()
                self.close_connection = True

            def _chat(self, body):
                words = server.reply.split(" ")
                prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
                if not body.get("stream"):
                    return self._json(
                        200,
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": server.reply},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": len(words),
                                "total_tokens": prompt_tokens + len(words),
                            },
                        },
                    )
                events = [
                    f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}, 'finish_reason': None}]})}\n\n"
                ]
                last_is_tool = body["messages"][-1].get("role") == "tool"
                if server.mode == "tool_call" and body.get("tools") and not last_is_tool:
                    name = body["tools"][0]["function"]["name"]
                    events.append(
                        f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'tool_calls': [{'index': 0, 'id': 'call_1', 'type': 'function', 'function': {'name': name, 'arguments': ''}}]}, 'finish_reason': None}]})}\n\n"
                    )
                    for part in ('{"expression": ', '"6*7"}'):
                        events.append(
                            f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'tool_calls': [{'index': 0, 'function': {'arguments': part}}]}, 'finish_reason': None}]})}\n\n"
                        )
                    finish = "tool_calls"
                    completion_tokens = 5
                else:
                    text = server.reply if not last_is_tool else "The tool said " + str(body["messages"][-1]["content"])
                    words = text.split(" ")
                    for i, word in enumerate(words):
                        piece = word if i == len(words) - 1 else word + " "
                        events.append(
                            f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': piece}, 'finish_reason': None}]})}\n\n"
                        )
                    finish = "stop"
                    completion_tokens = len(words)
                events.append(
                    f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}]})}\n\n"
                )
                if server.mode != "no_usage" and (body.get("stream_options") or {}).get("include_usage"):
                    events.append(
                        f"data: {json.dumps({**base, 'choices': [], 'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': completion_tokens, 'total_tokens': prompt_tokens + completion_tokens}})}\n\n"
                    )
                events.append("data: [DONE]\n\n")
                self._sse(events)

            def _anthropic(self, body):
                words = server.reply.split(" ")

                def event(name, data):
                    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

                events = [
                    event(
                        "message_start",
                        {
                            "message": {
                                "id": "msg_1",
                                "type": "message",
                                "role": "assistant",
                                "model": body["model"],
                                "content": [],
                                "stop_reason": None,
                                "stop_sequence": None,
                                "usage": {"input_tokens": 11, "output_tokens": 1},
                            }
                        },
                    ),
                    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
                ]
                for i, word in enumerate(words):
                    piece = word if i == len(words) - 1 else word + " "
                    events.append(
                        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                    )
                events += [
                    event("content_block_stop", {"index": 0}),
                    event(
                        "message_delta",
                        {
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": len(words)},
                        },
                    ),
                    event("message_stop", {}),
                ]
                self._sse(events)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # shutdown() waits up to one poll interval: 50 ms, not serve_forever's default 0.5 s
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def request_digest(body: dict) -> str:
    """The digest of a chat request's messages: what a ``DigestLLMServer`` answer is made of."""
    return hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()


class DigestLLMServer:
    """OpenAI chat completions (SSE) whose answer is six ``finding-<digest part>`` words made from
    the request (the same request, the same answer), one every ``word_seconds``. ``on_request`` runs
    as a request arrives (a test may hold it there); ``on_answered`` once an answer was delivered in
    full — one streamed to a peer that died is not. Started at once; ``httpd.shutdown()`` stops it."""

    def __init__(self, *, word_seconds: float = 0.02):
        self.word_seconds = word_seconds
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.on_request(body)
                digest = request_digest(body)
                try:
                    server.stream_answer(self, body["model"], digest)
                except OSError:
                    return
                self.close_connection = True
                server.on_answered(body, digest)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stream_answer(self, handler: BaseHTTPRequestHandler, model: str, digest: str) -> None:
        """The answer's words as chunks (a dead peer is noticed before the answer ends), then the usage."""
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model}
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        words = [f"finding-{digest[i : i + 6]}" for i in range(0, 36, 6)]
        for word in words:
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()
            time.sleep(self.word_seconds)
        usage = {"prompt_tokens": 50, "completion_tokens": len(words), "total_tokens": 50 + len(words)}
        handler.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        handler.wfile.flush()

    def on_request(self, body: dict) -> None:
        """A request arrived (before its answer)."""

    def on_answered(self, body: dict, digest: str) -> None:
        """An answer was delivered in full."""
