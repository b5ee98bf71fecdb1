"""Lake initialization: the zones every stage writes to, and a descriptor that names them."""

from __future__ import annotations

import json

from include.config import LAKE_ZONES, Settings
from include.storage import storage_for

# Bumped when the zone layout changes; stages can refuse a lake of another layout.
LAKE_LAYOUT_VERSION = 1


def lake_descriptor(settings: Settings) -> dict:
    """What ``_lake.json`` holds. Deterministic (no timestamps) so a re-run writes the same bytes."""
    return {
        "layout_version": LAKE_LAYOUT_VERSION,
        "lake_root": settings.lake_root,
        "zones": {zone: settings.zone_uri(zone) for zone in LAKE_ZONES},
    }


def initialize_lake(settings: Settings) -> dict:
    """Create every zone and write the lake descriptor; idempotent.

    Object stores have no folders, so each zone gets a ``_ZONE.json`` marker object: the zone
    then exists on both backends and lists the same way. Returns the descriptor plus the zones
    this call created (empty on a re-run).
    """
    descriptor = lake_descriptor(settings)
    created = []
    for zone, zone_uri in descriptor["zones"].items():
        marker_uri = f"{zone_uri}/_ZONE.json"
        storage = storage_for(marker_uri)
        if not storage.exists(marker_uri):
            storage.write_bytes(marker_uri, _json_bytes({"zone": zone}))
            created.append(zone)

    descriptor_uri = f"{settings.lake_root}/_lake.json"
    storage = storage_for(descriptor_uri)
    storage.write_bytes(descriptor_uri, _json_bytes(descriptor))
    # Read back what was written: a lake we cannot read is not initialized.
    if json.loads(storage.read_bytes(descriptor_uri)) != descriptor:
        raise RuntimeError(f"lake descriptor at {descriptor_uri} did not read back as written")
    return {**descriptor, "descriptor_uri": descriptor_uri, "created_zones": created}


def _json_bytes(payload: dict) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()
