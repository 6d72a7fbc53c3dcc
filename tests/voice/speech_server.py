"""A local HTTP server speaking the OpenAI audio API (``audio/transcriptions`` multipart upload,
``audio/speech``), so the real ``openai`` SDK path of apps.voice runs end to end in tests."""

from __future__ import annotations

import io
import json
import threading
import wave
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def tiny_wav(frames: int = 800) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * frames)
    return buffer.getvalue()


class SpeechServer:
    def __init__(self):
        self.transcripts: dict[bytes, str] = {}  # audio bytes → what was "said"
        self.requests: list[dict] = []
        self.fail_status = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes, content_type: str):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if server.fail_status:
                    return self._send(server.fail_status, b'{"error": {"message": "down"}}', "application/json")
                if self.path.endswith("/audio/transcriptions"):
                    message = BytesParser(policy=HTTP).parsebytes(
                        f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + raw
                    )
                    fields, audio = {}, b""
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        if name == "file":
                            audio = part.get_payload(decode=True)
                        else:
                            fields[name] = part.get_content().strip()
                    server.requests.append(
                        {
                            "path": self.path,
                            "fields": fields,
                            "audio": audio,
                            "authorization": headers.get("authorization"),
                        }
                    )
                    if audio not in server.transcripts:
                        return self._send(400, b'{"error": {"message": "unintelligible"}}', "application/json")
                    body = {
                        "text": server.transcripts[audio],
                        "language": fields.get("language") or "english",
                        "segments": [{"avg_logprob": -0.105}],
                    }
                    return self._send(200, json.dumps(body).encode(), "application/json")
                if self.path.endswith("/audio/speech"):
                    server.requests.append(
                        {"path": self.path, "json": json.loads(raw), "authorization": headers.get("authorization")}
                    )
                    return self._send(200, tiny_wav(), "audio/wav")
                self._send(404, b"{}", "application/json")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
