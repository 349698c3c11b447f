"""Turn received bytes into HL7 v2 messages: decoding, separators, batches, MSH header.

Real feeds differ from the standard's CR-only segment terminator: files arrive with LF or
CRLF, batch files wrap messages in FHS/BHS ... BTS/FTS (HL7 v2.5.1 section 2.10.3), and
some files simply concatenate messages. :func:`split_payload` handles all of these;
:func:`parse_message` splits one message into segments (fields are split lazily, see
:mod:`.fields`) and reads its MSH header.

Problems are raised as :class:`Hl7ParseError`, which carries an HL7 table 0357 error
code and the location, so the listener can answer with an AR NACK. Error text never
contains field values, only positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hl7

from sharedcare.ingest.hl7v2.errors import ErrorCode, Hl7ParseError
from sharedcare.ingest.hl7v2.fields import Delimiters, SegmentView, escapes_of

__all__ = [
    "SUPPORTED_VERSIONS",
    "Envelope",
    "MessageHeader",
    "ParsedMessage",
    "Payload",
    "decode",
    "normalise_segments",
    "parse_message",
    "split_payload",
]

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
"""HL7 v2 versions the listener accepts (MSH-12)."""

_ENVELOPE = {"FHS", "BHS", "BTS", "FTS"}
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}
_MAX_SEGMENTS = 50_000


def decode(raw: bytes) -> tuple[str, str]:
    """Decode received bytes, honouring MSH-18 where it names a known character set.

    UTF-8 is tried first (it is a superset of ASCII); bytes that are not valid UTF-8 are
    read as ISO 8859-1, the commonest legacy HL7 character set, which never fails.

    Args:
        raw: The bytes of one MLLP block or file.

    Returns:
        The text and the Python codec name used.
    """
    head = raw[:1024].decode("latin-1")
    declared = _declared_charset(head)
    if declared in ("latin-1", "iso8859-15"):
        return raw.decode(declared), declared
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _declared_charset(head: str) -> str | None:
    start = head.find("MSH")
    if start < 0 or len(head) < start + 4:
        return None
    sep = head[start + 3]
    line = head[start:].split("\r", 1)[0].split("\n", 1)[0]
    parts = line.split(sep)
    # parts[0] is "MSH", so MSH-n is parts[n - 1] (MSH-1 is the separator itself).
    if len(parts) < 18:
        return None
    rep_sep = parts[1][1:2] if len(parts[1]) > 1 else "~"
    value = parts[17].split(rep_sep)[0].strip().upper()
    return _CHARSETS.get(value)


def normalise_segments(text: str) -> list[str]:
    """Split text into segments, accepting CR, LF or CRLF terminators.

    MLLP framing characters and surrounding whitespace are removed and blank segments
    dropped (a multi-message file often separates messages with empty lines).

    Args:
        text: Decoded message or file text.

    Returns:
        The non-empty segments, in order.
    """
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    out = []
    for seg in text.split("\r"):
        seg = seg.strip("\x0b\x1c\x00 \t")
        if seg:
            out.append(seg)
    return out


@dataclass(frozen=True, slots=True)
class Envelope:
    """The FHS or BHS header that wrapped messages, used to address a batch ACK."""

    segment_id: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str


@dataclass(frozen=True, slots=True)
class Payload:
    """The messages found in one received block or file.

    Attributes:
        messages: Each message as CR-separated text, in order.
        envelope: The batch/file header when the payload was a batch, else ``None``.
        error: Why the envelope is unusable; when set, the whole payload is rejected.
    """

    messages: tuple[str, ...]
    envelope: Envelope | None = None
    error: Hl7ParseError | None = None

    @property
    def is_batch(self) -> bool:
        """Whether the payload needs a batch acknowledgement."""
        return self.envelope is not None or len(self.messages) > 1


def _envelope_from(seg: str) -> Envelope:
    sep = seg[3] if len(seg) > 3 else "|"
    parts = seg.split(sep)
    comp = parts[1][0] if len(parts) > 1 and parts[1] else "^"

    def get(n: int) -> str:
        # For FHS/BHS, like MSH, field n is parts[n - 1].
        return parts[n - 1].split(comp)[0].strip() if len(parts) >= n else ""

    control = get(11)
    return Envelope(seg[:3], get(3), get(4), get(5), get(6), control)


def split_payload(text: str) -> Payload:
    """Split decoded text into messages, checking any FHS/BHS batch envelope.

    See HL7 v2.5.1 section 2.10.3: ``[FHS] {[BHS] {MSH ...} [BTS]} [FTS]``, so batch and
    file headers and trailers are each optional. Messages start at MSH. The payload is
    rejected when the envelope is inconsistent: an FHS that is not first, anything after
    FTS, a segment outside any message (e.g. a BHS in the middle of a message), or a BTS-1
    count that disagrees with the messages in its batch (a sign of truncation).

    Args:
        text: Decoded text of one block or file.

    Returns:
        A :class:`Payload`; ``error`` is set when the envelope is malformed.
    """
    segments = normalise_segments(text)
    if not segments:
        return Payload(
            (),
            error=Hl7ParseError(
                "the message is empty; send an MSH segment first", ErrorCode.SEGMENT_SEQUENCE, "MSH"
            ),
        )
    if len(segments) > _MAX_SEGMENTS:
        return Payload(
            (),
            error=Hl7ParseError(
                f"the payload has more than {_MAX_SEGMENTS} segments; split it into smaller "
                "batches",
                ErrorCode.SEGMENT_SEQUENCE,
            ),
        )
    messages: list[list[str]] = []
    envelope: Envelope | None = None
    batch_count = 0
    file_done = False

    def fail(reason: str, position: int, seg_id: str) -> Payload:
        return Payload(
            tuple("\r".join(m) for m in messages),
            envelope,
            Hl7ParseError(reason, ErrorCode.SEGMENT_SEQUENCE, seg_id, position),
        )

    current: list[str] | None = None
    last_envelope = ""
    for pos, seg in enumerate(segments, start=1):
        seg_id = seg[:3].upper()
        if file_done:
            return fail(
                f"segment {pos} follows the FTS file trailer; nothing may come after FTS",
                pos,
                _safe_id(seg_id),
            )
        if seg_id in _ENVELOPE:
            if current is not None:
                last_envelope = f"; it follows {seg_id} at segment {pos}, which ended the message"
            current = None
            if seg_id == "FHS":
                if pos != 1:
                    return fail(
                        f"FHS at segment {pos} is not the first segment; a file header "
                        "must come first and files cannot nest",
                        pos,
                        seg_id,
                    )
                envelope = _envelope_from(seg)
            elif seg_id == "BHS":
                batch_count = 0
                if envelope is None:
                    envelope = _envelope_from(seg)
            elif seg_id == "BTS":
                count = _first_field(seg)
                if count.isdigit() and int(count) != batch_count:
                    return fail(
                        f"BTS-1 at segment {pos} declares {int(count)} messages but the "
                        f"batch holds {batch_count}; the batch may be truncated",
                        pos,
                        seg_id,
                    )
                batch_count = 0
            else:  # FTS
                file_done = True
            continue
        if seg_id == "MSH":
            last_envelope = ""
            current = [seg]
            messages.append(current)
            batch_count += 1
            continue
        if current is None:
            return fail(
                f"segment {pos} ({_safe_id(seg_id)}) is outside any message; every "
                f"message must begin with an MSH segment{last_envelope}",
                pos,
                _safe_id(seg_id),
            )
        current.append(seg)
    if not messages:
        return fail("no MSH segment found; every message must begin with MSH", 1, "MSH")
    return Payload(tuple("\r".join(m) for m in messages), envelope)


def _first_field(seg: str) -> str:
    sep = seg[3] if len(seg) > 3 else "|"
    parts = seg.split(sep)
    return parts[1].strip() if len(parts) > 1 else ""


_KNOWN_SEGMENTS = frozenset(
    [
        "ACC",
        "AIG",
        "AIL",
        "AIP",
        "AIS",
        "AL1",
        "ARQ",
        "BLG",
        "CTD",
        "CTI",
        "DB1",
        "DG1",
        "DSC",
        "DSP",
        "ERQ",
        "ERR",
        "EVN",
        "FT1",
        "GT1",
        "IAM",
        "IN1",
        "IN2",
        "IN3",
        "LOC",
        "MRG",
        "MSA",
        "NK1",
        "NPU",
        "NTE",
        "OBR",
        "OBX",
        "ODS",
        "ODT",
        "OM1",
        "OM2",
        "OM3",
        "OM4",
        "ORC",
        "PD1",
        "PDA",
        "PID",
        "PR1",
        "PRA",
        "PRT",
        "PV1",
        "PV2",
        "QAK",
        "QPD",
        "QRD",
        "QRF",
        "RCP",
        "RGS",
        "ROL",
        "RXA",
        "RXC",
        "RXE",
        "RXO",
        "RXR",
        "SAC",
        "SCH",
        "SFT",
        "SPM",
        "STF",
        "TQ1",
        "TQ2",
        "TXA",
        "UAC",
        "UB1",
        "UB2",
    ]
)


def _safe_id(seg_id: str) -> str:
    """Return a segment id only if it is a standard one (never echo arbitrary content)."""
    return seg_id if seg_id in _KNOWN_SEGMENTS else "?"


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """What the listener, sink and ACK need from MSH (HL7 v2.5.1 section 2.14.9).

    Values are unescaped. The ``*_hd`` fields keep every HD component so the ACK can echo
    the sender exactly; ``sending_application``/``sending_facility`` are the first
    non-empty of HD-1 (namespace) and HD-2 (universal id), used as the feed identity.
    """

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_code: str
    trigger_event: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    timestamp: str = ""
    charset: str = ""
    accept_ack_type: str = ""
    application_ack_type: str = ""
    sending_application_hd: tuple[str, ...] = ()
    sending_facility_hd: tuple[str, ...] = ()
    receiving_application_hd: tuple[str, ...] = ()
    receiving_facility_hd: tuple[str, ...] = ()

    @property
    def feed(self) -> tuple[str, str]:
        """The feed identity: (sending application, sending facility)."""
        return (self.sending_application, self.sending_facility)

    @property
    def idempotency_key(self) -> tuple[str, str, str]:
        """(sending application, sending facility, MSH-10): a resend has the same key."""
        return (self.sending_application, self.sending_facility, self.control_id)

    @property
    def message_type(self) -> str:
        """``CODE^EVENT`` as written in MSH-9 (``ACK`` alone when there is no event)."""
        if self.trigger_event:
            return f"{self.message_code}^{self.trigger_event}"
        return self.message_code


@dataclass(slots=True)
class ParsedMessage:
    """One parsed message: its header, text, delimiters and segments."""

    header: MessageHeader
    text: str
    delimiters: Delimiters
    segments: list[SegmentView]

    def to_hl7(self) -> Any:
        """The message as a python-hl7 ``hl7.Message`` (built on demand; it is slow)."""
        return hl7.parse(self.text)

    def first(self, seg_id: str) -> SegmentView | None:
        """Return the first segment named ``seg_id`` or ``None``."""
        for seg in self.segments:
            if seg.id == seg_id:
                return seg
        return None

    def all(self, seg_id: str) -> list[SegmentView]:
        """Return every segment named ``seg_id``."""
        return [s for s in self.segments if s.id == seg_id]

    @property
    def z_segments(self) -> list[str]:
        """Ids of site-defined Z-segments, which are kept in the raw message only."""
        if "\rZ" not in self.text:  # the first segment is MSH, so a Z-segment follows a CR
            return []
        return sorted({s.id for s in self.segments if s.id.startswith("Z")})


def _hd(view: SegmentView, n: int) -> tuple[tuple[str, ...], str]:
    """(every component, the first non-empty of HD-1 and HD-2) of an HD field."""
    rep = view.rep(n)
    comps = tuple([rep.c(i) for i in range(1, len(rep) + 1)])
    if not any(comps):
        return (), ""
    return comps, comps[0] or (comps[1] if len(comps) > 1 else "")


_MSH_DELIMITERS: dict[str, tuple[Delimiters, dict[str, str]]] = {}


def _delimiters_of(text: str) -> tuple[Delimiters, dict[str, str]]:
    """The delimiters of a message whose MSH passed :func:`_check_msh_start`, with their
    escape table. They are MSH-1 and the four characters of MSH-2 (``text[3:8]``), which
    every message of a feed repeats, so each set is built once."""
    key = text[3:8]
    held = _MSH_DELIMITERS.get(key)
    if held is None:
        if len(_MSH_DELIMITERS) > 256:  # bounded: delimiters come from senders
            _MSH_DELIMITERS.clear()
        delimiters = Delimiters.from_msh(text)
        held = _MSH_DELIMITERS[key] = (delimiters, escapes_of(delimiters))
    return held


_STATIC_MSH_FIELDS = (3, 4, 5, 6, 9, 11, 12, 15, 16, 18)
"""MSH fields that every message of a feed repeats: everything the header takes from MSH
but the timestamp (MSH-7) and the control id (MSH-10)."""


_STATIC_MSH: dict[tuple[str, ...], dict[str, Any]] = {}
_HD_FIELDS = (
    ("sending_application", 3),
    ("sending_facility", 4),
    ("receiving_application", 5),
    ("receiving_facility", 6),
)


def _static_msh(msh: SegmentView, delimiter_key: str) -> dict[str, Any]:
    """:class:`MessageHeader`'s values from :data:`_STATIC_MSH_FIELDS`, by field name,
    remembered per feed (the caller adds MSH-7 and MSH-10; the dict is shared, never changed).

    They depend on nothing but those fields' text and the delimiters (``delimiter_key``,
    MSH-1 and MSH-2), so a feed's are read once; a field the segment does not have reads as
    empty, which is what it is keyed as.
    """
    parts = msh._parts  # MSH-n is parts[n - 1]
    count = len(parts)
    key = (delimiter_key, *[parts[n - 1] if n <= count else "" for n in _STATIC_MSH_FIELDS])
    held = _STATIC_MSH.get(key)
    if held is None:
        if len(_STATIC_MSH) > 1024:  # bounded: the values come from senders
            _STATIC_MSH.clear()
        held = {
            "message_code": msh.v(9, 1).upper(),
            "trigger_event": msh.v(9, 2).upper(),
            "structure": msh.v(9, 3).upper(),
            "processing_id": msh.v(11),
            "version": msh.v(12),
            "charset": msh.v(18),
            "accept_ack_type": msh.v(15),
            "application_ack_type": msh.v(16),
        }
        for name, n in _HD_FIELDS:
            held[f"{name}_hd"], held[name] = _hd(msh, n)
        _STATIC_MSH[key] = held
    return held


def _check_msh_start(text: str) -> None:
    if not text.startswith("MSH"):
        raise Hl7ParseError(
            "the message does not begin with MSH", ErrorCode.SEGMENT_SEQUENCE, "MSH", 1
        )
    if len(text) < 8:
        raise Hl7ParseError(
            "MSH is too short to hold the field separator and encoding characters (MSH-1, MSH-2)",
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH",
            1,
            2,
        )
    sep = text[3]
    enc = text[4:8]
    if sep.isalnum() or sep.isspace():
        raise Hl7ParseError(
            "MSH-1 field separator must be a punctuation character such as |",
            ErrorCode.DATA_TYPE,
            "MSH",
            1,
            1,
        )
    if len(set(enc + sep)) != 5 or any(c.isalnum() or c.isspace() for c in enc):
        raise Hl7ParseError(
            "MSH-2 must hold four distinct encoding characters, such as ^~\\&",
            ErrorCode.DATA_TYPE,
            "MSH",
            1,
            2,
        )


def parse_message(text: str) -> ParsedMessage:
    """Parse one message (CR-separated, as produced by :func:`split_payload`).

    Args:
        text: The message text, beginning with MSH.

    Returns:
        The :class:`ParsedMessage`.

    Raises:
        Hl7ParseError: If MSH is unusable, a required MSH field is missing, or the version
            or processing id is unsupported. The error carries the table 0357 code.
    """
    _check_msh_start(text)
    delimiters, escapes = _delimiters_of(text)
    segments = [segment for segment in text.split("\r") if segment]
    views = [
        SegmentView(segment, i, delimiters, escapes) for i, segment in enumerate(segments, start=1)
    ]
    for view in views:
        if not (
            len(view.id) == 3
            and view.id.isalnum()
            and view.id.isascii()
            and view.id[0].isalpha()
            and view.id.upper() == view.id
            and (len(view.text) == 3 or view.text[3] == delimiters.field)
        ):
            raise Hl7ParseError(
                f"segment {view.index} has an invalid segment id; ids are three "
                "upper-case letters or digits",
                ErrorCode.SEGMENT_SEQUENCE,
                "?",
                view.index,
            )
    msh = views[0]
    header = MessageHeader(control_id=msh.v(10), timestamp=msh.v(7), **_static_msh(msh, text[3:8]))
    parsed = ParsedMessage(header, text, delimiters, views)
    try:
        _validate_header(parsed)
    except Hl7ParseError as exc:
        exc.header = header
        raise
    return parsed


def _validate_header(parsed: ParsedMessage) -> None:
    h = parsed.header
    if not h.control_id:
        raise Hl7ParseError(
            "MSH-10 message control id is empty; every message needs a unique "
            "control id so resends can be recognised",
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH",
            1,
            10,
        )
    if len(h.control_id) > 199:
        raise Hl7ParseError(
            "MSH-10 message control id is longer than 199 characters",
            ErrorCode.DATA_TYPE,
            "MSH",
            1,
            10,
        )
    if not h.sending_application and not h.sending_facility:
        raise Hl7ParseError(
            "MSH-3 sending application and MSH-4 sending facility are both "
            "empty; the feed cannot be identified",
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH",
            1,
            4,
        )
    if not h.message_code:
        raise Hl7ParseError(
            "MSH-9 message type is empty; send e.g. ADT^A01",
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH",
            1,
            9,
        )
    if not h.version:
        raise Hl7ParseError(
            "MSH-12 version id is empty; send one of " + ", ".join(SUPPORTED_VERSIONS),
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH",
            1,
            12,
        )
    if h.version not in SUPPORTED_VERSIONS:
        raise Hl7ParseError(
            "MSH-12 version is not supported; this listener accepts "
            + ", ".join(SUPPORTED_VERSIONS),
            ErrorCode.UNSUPPORTED_VERSION,
            "MSH",
            1,
            12,
        )
    if h.processing_id[:1].upper() not in ("P", "T", "D"):
        raise Hl7ParseError(
            "MSH-11 processing id must be P (production), T (training) or D (debugging)",
            ErrorCode.UNSUPPORTED_PROCESSING_ID,
            "MSH",
            1,
            11,
        )
