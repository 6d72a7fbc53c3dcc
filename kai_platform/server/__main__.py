"""``python -m kai_platform.server [daphne options] kai_platform.asgi:application``."""

from kai_platform.server.server import KaiCommandLineInterface

if __name__ == "__main__":
    KaiCommandLineInterface.entrypoint()
