"""Imports every area's models so ``metadata`` is complete (Alembic, tests)."""
from guestguard import (
    domain as _domain,  # noqa: F401
    idempotency as _idempotency,  # noqa: F401
)
from guestguard.accounts import models as _accounts  # noqa: F401
from guestguard.activity import models as _activity  # noqa: F401
from guestguard.audit import models as _audit  # noqa: F401
from guestguard.billing import models as _billing  # noqa: F401
from guestguard.checkin import models as _checkin  # noqa: F401
from guestguard.db import Base
from guestguard.events import models as _events  # noqa: F401
from guestguard.guard import models as _guard  # noqa: F401
from guestguard.imports import models as _imports  # noqa: F401
from guestguard.notifications import models as _notifications  # noqa: F401
from guestguard.privacy import models as _privacy  # noqa: F401
from guestguard.reminders import models as _reminders  # noqa: F401
from guestguard.webhooks import models as _webhooks  # noqa: F401
from guestguard.workspaces import models as _workspaces  # noqa: F401

metadata = Base.metadata
