"""The request context: who is asking, for which organisation, in which role, and why.

Every interaction with the record passes through one gate, the
:class:`~sharedcare.record.repository.Repository`, which is built per request from a
:class:`RequestContext`. The access policy (roles, legitimate relationships, objections,
break-glass) plugs into that gate; the audit trail records the context of every interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: HL7 v3 PurposeOfUse codes used by sharedcare (http://terminology.hl7.org/CodeSystem/v3-ActReason).
PURPOSES = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "HOPERAT": "healthcare operations",
    "HRESCH": "healthcare research",
    "PUBHLTH": "public health",
    "SYSADMIN": "system administration",
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking, and why.

    Attributes:
        user: Identifier of the person or system making the request.
        organisation: ODS code of the organisation they act for, if known.
        role: Their role (e.g. ``clinician``, ``analyst``, ``feed``, ``system``).
        purpose: A PurposeOfUse code from :data:`PURPOSES`.
        source: Where the request came from (client address, feed name).
        request_id: Correlates audit events of one request.
    """

    user: str
    organisation: str | None = None
    role: str = "system"
    purpose: str = "TREAT"
    source: str = "internal"
    request_id: str = ""
    feed: str | None = field(default=None)

    @classmethod
    def system(cls, purpose: str = "SYSADMIN", source: str = "internal") -> RequestContext:
        """The context of sharedcare itself (loaders, migrations, background jobs)."""
        return cls(user="sharedcare", role="system", purpose=purpose, source=source)
