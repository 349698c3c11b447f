"""Resource ids of mapped HL7 v2 messages: UUID v5, computed without ``uuid.uuid5``."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from sharedcare.ingest.hl7v2.mapping.context import ID_NAMESPACE, name_uuid


@given(st.text())
def test_name_uuid_is_uuid5_in_the_ingest_namespace(name: str) -> None:
    assert name_uuid(name) == str(uuid.uuid5(ID_NAMESPACE, name))


def test_name_uuid_of_typical_keys() -> None:
    for name in (
        "",
        "Patient|urn:sharedcare:hl7v2:id:RBD:RBD|H42",
        "Location|RBD|W1^B^3",
        "Encounter|urn:sharedcare:hl7v2:visit:RBD|V-é€😀",
    ):
        assert name_uuid(name) == str(uuid.uuid5(ID_NAMESPACE, name))
        assert uuid.UUID(name_uuid(name)).version == 5
