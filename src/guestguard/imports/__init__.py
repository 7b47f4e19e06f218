"""Guest lists from spreadsheets: importers from plugins
(``register_importers``), the preview, the import, its undo, and the
export. Its routes are declared in ``routes.py``."""
from __future__ import annotations

from huey import crontab

from guestguard.plugins import Importer, SettingsError, by_name, collect


def includeme(config) -> None:
    from guestguard.imports.services import purge

    registry = config.registry
    importers = by_name(collect(registry["plugins"].hook.register_importers(settings=config.get_settings())),
                        Importer, "importer")
    registry["imports.importers"] = list(importers.values())
    registry["imports.writers"] = {name: importer for name, importer in importers.items()
                                   if callable(getattr(importer, "write", None))}
    for name, importer in registry["imports.writers"].items():
        if not getattr(importer, "media_type", ""):
            raise SettingsError(f"importer {name!r} can write but names no media_type")
    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
    config.add_periodic_task(purge, crontab(minute="41"), in_transaction=False)
