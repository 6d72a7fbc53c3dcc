"""The settings by area, each module read from the environment; ``kai_platform.settings`` gathers
them (``DJANGO_SETTINGS_MODULE`` stays ``kai_platform.settings``). A module imports what it needs of
another by name, so the order they load in follows from their imports."""
