"""Database backends of the platform (``ENGINE = "kai_platform.db.postgresql"``)."""
