"""HL7 v2 ingest: MLLP listener, parsing, ACK/NACK and mapping to FHIR R4.

Public surface:

* :func:`parse.split_payload` / :func:`parse.parse_message` / :class:`parse.MessageHeader`
* :class:`ack.AckDecision` / :func:`ack.build_ack`
* :class:`listener.MessageSink` (what the store-then-ACK sink implements) and
  :func:`listener.acknowledge` (one received block to its reply)
* :class:`mllp.MllpServer` (the asyncio MLLP listener)
* :func:`mapping.map_message` (HL7 v2 to FHIR R4) and :class:`mapping.MappedMessage`
"""

from sharedcare.ingest.hl7v2.ack import AckCode, AckDecision, AckIdentity, build_ack
from sharedcare.ingest.hl7v2.errors import ErrorCode, Hl7ParseError, Issue, MappingError, Severity
from sharedcare.ingest.hl7v2.listener import BlockResult, MessageSink, acknowledge
from sharedcare.ingest.hl7v2.mapping import MappedMessage, PatientMerge, map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader, ParsedMessage, parse_message

__all__ = [
    "AckCode",
    "AckDecision",
    "AckIdentity",
    "BlockResult",
    "ErrorCode",
    "Hl7ParseError",
    "Issue",
    "MappedMessage",
    "MappingError",
    "MessageHeader",
    "MessageSink",
    "ParsedMessage",
    "PatientMerge",
    "Severity",
    "acknowledge",
    "build_ack",
    "map_message",
    "parse_message",
]
