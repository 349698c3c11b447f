"""From one received block to its acknowledgement: validate, hand to the sink, answer.

This is the transport-free heart of the MLLP listener, so it can be driven by a socket
(:mod:`sharedcare.ingest.hl7v2.mllp`), by a file import or by tests alike.

Store, then ACK: for each message that passes MSH validation the listener awaits
``sink.accept(raw, header)`` and only builds the acknowledgement from what the sink
returns, so a database sink that commits before returning gives the guarantee that an AA
is never sent for a message that is not durably stored. Resends are recognised by the
sink through :attr:`MessageHeader.idempotency_key` (sender plus MSH-10).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from sharedcare.ingest.hl7v2.ack import (
    AckCode,
    AckDecision,
    AckIdentity,
    build_ack,
    build_batch_ack,
)
from sharedcare.ingest.hl7v2.errors import (
    ErrorCode,
    Hl7ParseError,
    Issue,
    MappingError,
    Severity,
)
from sharedcare.ingest.hl7v2.mapping import support_problem
from sharedcare.ingest.hl7v2.parse import MessageHeader, decode, parse_message, split_payload

__all__ = ["INTERNAL_ERROR_REASON", "BlockResult", "MessageResult", "MessageSink", "acknowledge"]

logger = logging.getLogger(__name__)

INTERNAL_ERROR_REASON = (
    "the receiver could not store the message because of an internal error; it was not "
    "accepted, so resend it later"
)


class MessageSink(Protocol):
    """Where accepted messages go. The lead's database sink stores, then returns AA.

    ``accept`` is awaited once per message that passed MSH validation and whose type is
    supported. It must only return :meth:`AckDecision.accept` after the raw message is
    durably committed; for a resend (same :attr:`MessageHeader.idempotency_key`) it should
    return AA with ``duplicate=True`` without storing again. It may raise
    :class:`~sharedcare.ingest.hl7v2.errors.MappingError` (answered with AE); any other
    exception is answered with AR and logged without message content.

    A sink may also offer ``async accept_parsed(raw, parsed)``, taking the
    :class:`~sharedcare.ingest.hl7v2.parse.ParsedMessage` the listener already made; the
    listener then calls it instead of ``accept``, with the same contract.
    """

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        """Store (and map) one message, then say how to acknowledge it."""
        ...


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What happened to one message of a block."""

    header: MessageHeader | None
    decision: AckDecision
    ack: str


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The outcome for one received block: per-message results and the reply bytes."""

    results: tuple[MessageResult, ...]
    reply: bytes
    codec: str

    @property
    def codes(self) -> list[AckCode]:
        """The MSA-1 code of every acknowledgement sent, in order."""
        return [r.decision.code for r in self.results]


def _issue_of(exc: Hl7ParseError | MappingError) -> Issue:
    return exc.issue


_CHARSET_GUESSED = Issue(
    "the message is not valid UTF-8 and MSH-18 does not declare 8859/1, so it was read as "
    "ISO 8859-1; declare the character set in MSH-18",
    ErrorCode.DATA_TYPE,
    "MSH",
    1,
    18,
    Severity.WARNING,
)


async def _one(
    text: str, raw: bytes, sink: MessageSink, identity: AckIdentity, codec: str
) -> MessageResult:
    try:
        parsed = parse_message(text)
    except Hl7ParseError as exc:
        decision = AckDecision.reject(_issue_of(exc))
        header_read: MessageHeader | None = exc.header
        return MessageResult(header_read, decision, build_ack(header_read, decision, identity))
    header = parsed.header
    problem = support_problem(header)
    if problem is not None:
        decision = AckDecision.reject(problem)
    else:
        try:
            accept_parsed = getattr(sink, "accept_parsed", None)
            if accept_parsed is not None:  # saves parsing the message a second time
                returned = await accept_parsed(raw, parsed)
            else:
                returned = await sink.accept(raw, header)
            if not isinstance(returned, AckDecision):
                raise TypeError("MessageSink.accept must return an AckDecision")
            decision = returned
        except MappingError as exc:
            decision = AckDecision.error(_issue_of(exc))
        except Hl7ParseError as exc:
            decision = AckDecision.reject(_issue_of(exc))
        except Exception as exc:  # any sink failure becomes an AR, never a crash
            logger.error(
                "sink failed for feed %s control id %s: %s",
                header.feed,
                header.control_id,
                type(exc).__name__,
            )
            decision = AckDecision.reject(Issue(INTERNAL_ERROR_REASON, ErrorCode.INTERNAL_ERROR))
    if (
        decision.code is AckCode.ACCEPT
        and codec == "latin-1"
        and header.charset.upper() not in ("8859/1", "8859/15")
    ):
        decision = replace(decision, issues=(*decision.issues, _CHARSET_GUESSED))
    if logger.isEnabledFor(logging.INFO):  # the arguments are not built for nothing
        logger.info(
            "message from %s control id %s: %s%s",
            header.feed,
            header.control_id,
            decision.code.value,
            " (resend)" if decision.duplicate else "",
        )
    return MessageResult(header, decision, build_ack(header, decision, identity))


async def acknowledge(
    block: bytes, sink: MessageSink, identity: AckIdentity | None = None
) -> BlockResult:
    """Process one received block (an MLLP payload or a file) and build the reply.

    A single message gets a single ACK. A batch (FHS/BHS envelope, or several messages
    concatenated) gets a BHS/BTS batch holding one ACK per message. A malformed envelope
    gets one AR NACK for the whole block and no message is passed to the sink.

    Args:
        block: The received bytes, without MLLP framing.
        sink: Where valid messages are stored.
        identity: Our application/facility for ACKs to messages that named no receiver.

    Returns:
        The per-message results and the reply encoded in the sender's character set.
    """
    identity = identity or AckIdentity()
    text, codec = decode(block)
    payload = split_payload(text)
    results: list[MessageResult] = []
    if payload.error is not None:
        decision = AckDecision.reject(payload.error.issue)
        ack = build_ack(None, decision, identity, envelope=payload.envelope)
        results.append(MessageResult(None, decision, ack))
        logger.info("block rejected: %s", payload.error.issue.code.text)
        reply = ack
    elif not payload.is_batch:
        results.append(await _one(payload.messages[0], block, sink, identity, codec))
        reply = results[0].ack
    else:
        for message_text in payload.messages:
            raw = message_text.encode(codec, errors="replace")
            results.append(await _one(message_text, raw, sink, identity, codec))
        reply = build_batch_ack(payload.envelope, [r.ack for r in results], identity)
    return BlockResult(tuple(results), reply.encode(codec, errors="replace"), codec)
