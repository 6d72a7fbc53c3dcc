"""kai_platform.server's close frames: which codes go on the wire and how reasons are cut (the
real-server behaviour is in tests/conformance/test_close_codes.py)."""

from kai_platform.server.protocol import close_payload


def test_codes_an_endpoint_may_send_pass_as_they_are():
    for code in (1000, 1001, 1008, 1009, 1011, 1013, 3000, 4999):
        assert close_payload(code, None) == (code, None)
    assert close_payload(None, None) == (1000, None)  # ASGI: no code means normal closure


def test_reserved_or_invalid_codes_become_a_server_fault():
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000, "1008"):
        assert close_payload(code, "X") == (1011, b"INVALID_CLOSE_CODE")


def test_reason_is_cut_to_123_bytes_never_inside_a_character():
    code, reason = close_payload(1008, "AUTHENTICATION_FAILED: " + "é" * 100)
    assert code == 1008 and len(reason) <= 123
    assert reason.decode("utf-8").startswith("AUTHENTICATION_FAILED: é")  # decodes: no cut character
