"""The platform's ASGI server: daphne with WebSocket close frames that carry the code and reason the
application asked for, and a shutdown that warns and closes sockets (1001) before it stops.

``python -m kai_platform.server [daphne options] kai_platform.asgi:application`` takes daphne's
command line. See ``protocol.py`` for the close frames and ``drain.py`` for the shutdown.
"""
