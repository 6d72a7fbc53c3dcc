"""The knowledge app's hooks into other apps, registered when it is ready: the agent tool
(``tools.py``) and the workflow step type ``knowledge`` (``steps.py``)."""

from apps.knowledge import extraction, steps, tools  # noqa: F401  (each module registers itself)
