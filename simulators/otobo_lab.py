"""The lab profile of the OTOBO simulator (``python -m simulators.otobo --lab``).

A stock OTOBO plus what README.md ("Running against a real OTOBO") tells an admin to set up for
the governed alert path: the ticket types of ims_sop's default ``ticket_types``, the IMS dynamic
fields of the SOP engine's OTOBO mapping and ``AlertFingerprint`` for the FIRING details.  The queues
(Infrastructure, Platform, Storage), the agent ``alertbot`` and the
customer user ``monitoring`` of the inventory are in the simulator's default config already and
stay as they are.  ``scripts/labstack.py`` (``make demo``, the end-to-end test) starts this profile.
"""
from __future__ import annotations

from typing import Any

LAB_TICKET_TYPES = ("Incident", "Problem", "RfC")
ALERT_DYNAMIC_FIELDS = ("AlertFingerprint",)
IMS_DYNAMIC_FIELDS = (
    "IMSEntity", "IMSStatus", "IMSCategory", "IMSSubcategory", "IMSPriority", "IMSSeverity", "IMSSeverityLevel",
    "IMSDetectionSource", "IMSReporter", "IMSAffectedService", "IMSAssignedTeam", "IMSChangeLink", "IMSProblemLink",
    "IMSIncidentLinks", "IMSWorkaround", "IMSRootCause", "IMSPIR", "IMSKBLink", "IMSOpenedAt", "IMSRespondedAt",
    "IMSResolvedAt", "IMSResolvedBy", "IMSClosedBy", "IMSRequester", "IMSApprover", "IMSVendor", "IMSCorrelationKey",
)


def lab_overrides() -> dict[str, Any]:
    """Config keys the lab profile overrides (a fresh dict each call; callers may extend it)."""
    return {
        "ticket_types": list(LAB_TICKET_TYPES),
        "dynamic_fields": [{"name": name, "type": "Text"} for name in ALERT_DYNAMIC_FIELDS + IMS_DYNAMIC_FIELDS],
    }
