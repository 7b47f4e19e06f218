"""Imports every area's models so ``metadata`` is complete (Alembic, tests)."""
from guestguard.db import Base
from guestguard.notifications import models as _notifications  # noqa: F401

metadata = Base.metadata
