"""Parsing HL7 v2: separators, character sets, batches and the MSH header."""

from __future__ import annotations

import pytest

from sharedcare.ingest.hl7v2.errors import ErrorCode, Hl7ParseError
from sharedcare.ingest.hl7v2.parse import (
    decode,
    normalise_segments,
    parse_message,
    split_payload,
)

MSH = "MSH|^~\\&|PAS|RDCH^1.2.3^ISO|SC|ICS|20240102030405||ADT^A01^ADT_A01|CTRL1|P|2.5.1"
PID = "PID|1||123456^^^RDCH^MR||ZEBEDEE^ALICE||19800101|F"
PV1 = "PV1|1|I|WARD1^BAY2^BED3"


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segments_split_the_same_whatever_the_terminator(sep: str) -> None:
    text = sep.join([MSH, PID, PV1]) + sep
    assert normalise_segments(text) == [MSH, PID, PV1]


def test_blank_lines_and_mllp_characters_are_dropped() -> None:
    text = "\x0b" + MSH + "\r\r\n" + PID + "\r\x1c\r"
    assert normalise_segments(text) == [MSH, PID]


def test_decode_prefers_utf8_and_falls_back_to_latin1() -> None:
    assert decode("MSH|^~\\&|A|B\rPID|||1||Zoë".encode())[1] == "utf-8"
    text, codec = decode("MSH|^~\\&|A|B\rPID|||1||Zo\xeb".encode("latin-1"))
    assert codec == "latin-1"
    assert text.endswith("Zoë")


def test_decode_honours_msh18_latin1() -> None:
    msh = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1"
    # "Ã©" is valid UTF-8 for é, but MSH-18 says the bytes are ISO 8859-1.
    raw = (msh + "\rPID|||1||" + "Ã©").encode("latin-1")
    text, codec = decode(raw)
    assert codec == "latin-1"
    assert text.endswith("Ã©")


def test_single_message_is_not_a_batch() -> None:
    payload = split_payload("\r".join([MSH, PID]))
    assert payload.error is None
    assert payload.messages == ("\r".join([MSH, PID]),)
    assert not payload.is_batch


def test_batch_with_envelope_is_split_and_counted() -> None:
    msh2 = MSH.replace("CTRL1", "CTRL2")
    envelope = ["FHS|^~\\&|PAS|RDCH", "BHS|^~\\&|PAS|RDCH|SC|ICS|20240101||||B1"]
    text = "\n".join([*envelope, MSH, PID, msh2, PID, "BTS|2", "FTS|1"])
    payload = split_payload(text)
    assert payload.error is None
    assert len(payload.messages) == 2
    assert payload.is_batch
    assert payload.envelope is not None
    assert payload.envelope.segment_id == "FHS"


def test_concatenated_messages_without_envelope_are_a_batch() -> None:
    payload = split_payload("\r\r".join([MSH + "\r" + PID, MSH + "\r" + PID]))
    assert payload.error is None
    assert len(payload.messages) == 2
    assert payload.envelope is None
    assert payload.is_batch


def test_batch_count_mismatch_is_rejected() -> None:
    payload = split_payload("\r".join(["BHS|^~\\&|PAS|RDCH", MSH, PID, "BTS|3"]))
    assert payload.error is not None
    assert "BTS-1" in payload.error.reason
    assert payload.error.issue.code is ErrorCode.SEGMENT_SEQUENCE


@pytest.mark.parametrize(
    ("segments", "fragment"),
    [
        (["BHS|^~\\&|PAS", "EVN|A01", PID, "BTS|1"], "outside any message"),
        (["BHS|^~\\&|PAS", MSH, "BHS|^~\\&|PAS", PID, "BTS|1"], "follows BHS at segment 3"),
        ([MSH, PID, "FHS|^~\\&|PAS"], "FHS at segment 3 is not the first segment"),
        (["FHS|^~\\&|PAS", MSH, "FTS|1", MSH], "follows the FTS"),
        (["BHS|^~\\&|PAS", "BTS|0"], "no MSH segment"),
    ],
)
def test_broken_envelopes_are_rejected_with_a_position(segments: list[str], fragment: str) -> None:
    payload = split_payload("\r".join(segments))
    assert payload.error is not None
    assert fragment in payload.error.reason


def test_empty_payload_is_rejected() -> None:
    payload = split_payload(" \r\n ")
    assert payload.error is not None
    assert "empty" in payload.error.reason


def test_header_fields_are_read() -> None:
    parsed = parse_message("\r".join([MSH, PID]))
    h = parsed.header
    assert h.sending_application == "PAS"
    assert h.sending_facility == "RDCH"
    assert h.sending_facility_hd == ("RDCH", "1.2.3", "ISO")
    assert (h.message_code, h.trigger_event, h.structure) == ("ADT", "A01", "ADT_A01")
    assert h.message_type == "ADT^A01"
    assert h.control_id == "CTRL1"
    assert h.version == "2.5.1"
    assert h.feed == ("PAS", "RDCH")
    assert h.idempotency_key == ("PAS", "RDCH", "CTRL1")
    assert [s.id for s in parsed.segments] == ["MSH", "PID"]


def test_non_standard_delimiters_are_honoured() -> None:
    text = "MSH^~|\\&^SENDING^200M^RECEIVING^200^20120918173931^^ADT~A01^CTRL9^P^2.4\rPID^1"
    h = parse_message(text).header
    assert (h.message_code, h.trigger_event, h.control_id, h.version) == (
        "ADT",
        "A01",
        "CTRL9",
        "2.4",
    )


def test_escaped_values_are_unescaped() -> None:
    parsed = parse_message(MSH + "\rPID|1||A\\F\\B^^^RDCH")
    pid = parsed.first("PID")
    assert pid is not None
    assert pid.v(3) == "A|B"


def test_z_segments_are_listed() -> None:
    parsed = parse_message("\r".join([MSH, PID, "ZXY|1|secret", "ZAB|2"]))
    assert parsed.z_segments == ["ZAB", "ZXY"]


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("PID|1", ErrorCode.SEGMENT_SEQUENCE, "does not begin with MSH"),
        ("MSH|", ErrorCode.REQUIRED_FIELD_MISSING, "MSH-1, MSH-2"),
        ("MSHA^~\\&|", ErrorCode.DATA_TYPE, "MSH-1"),
        ("MSH|^^\\&|A|B", ErrorCode.DATA_TYPE, "MSH-2"),
        (MSH.replace("CTRL1", ""), ErrorCode.REQUIRED_FIELD_MISSING, "MSH-10"),
        (MSH.replace("|2.5.1", "|2.8"), ErrorCode.UNSUPPORTED_VERSION, "MSH-12"),
        (MSH.replace("|2.5.1", "|"), ErrorCode.REQUIRED_FIELD_MISSING, "MSH-12"),
        (MSH.replace("|P|", "|N|"), ErrorCode.UNSUPPORTED_PROCESSING_ID, "MSH-11"),
        (MSH.replace("PAS|RDCH^1.2.3^ISO", "|"), ErrorCode.REQUIRED_FIELD_MISSING, "MSH-4"),
        (MSH.replace("ADT^A01^ADT_A01", ""), ErrorCode.REQUIRED_FIELD_MISSING, "MSH-9"),
        (MSH + "\rzz1|x", ErrorCode.SEGMENT_SEQUENCE, "invalid segment id"),
    ],
)
def test_bad_headers_raise_a_located_error(text: str, code: ErrorCode, fragment: str) -> None:
    with pytest.raises(Hl7ParseError) as info:
        parse_message(text)
    assert info.value.issue.code is code
    assert fragment in info.value.reason


def test_errors_never_echo_values() -> None:
    text = MSH.replace("|2.5.1", "|SECRET-VERSION")
    with pytest.raises(Hl7ParseError) as info:
        parse_message(text)
    assert "SECRET" not in info.value.reason
    payload = split_payload("BHS|^~\\&|A\rSMITHJOHN|x")
    assert payload.error is not None
    assert "SMI" not in payload.error.reason


def test_unescape_sequences() -> None:
    from sharedcare.ingest.hl7v2.fields import unescape

    seps = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
    assert unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "\\", seps) == "a|b^c&d~e\\f"
    assert unescape("line\\.br\\next", "\\", seps) == "line\nnext"
    assert unescape("\\X41C3\\", "\\", seps) == "AÃ"
    assert unescape("\\H\\bold\\N\\", "\\", seps) == "bold"
    assert unescape("open\\F", "\\", seps) == "open\\F"
    assert unescape("bad\\XZZ\\", "\\", seps) == "bad\\XZZ\\"


def test_malformed_escapes_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    parsed = parse_message(MSH + "\rPID|1||X1^^^RDCH||SECRETNAME\\\\\\C2842\\")
    pid = parsed.first("PID")
    assert pid is not None
    with caplog.at_level("DEBUG"):
        pid.v(5)
    assert "SECRETNAME" not in caplog.text


def test_python_hl7_object_model_is_available() -> None:
    parsed = parse_message("\r".join([MSH, PID]))
    message = parsed.to_hl7()
    assert str(message.segment("PID")[5]) == "ZEBEDEE^ALICE"
    assert parsed.delimiters.component == "^"
