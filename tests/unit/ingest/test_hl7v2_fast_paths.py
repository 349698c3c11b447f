"""The listener's shortcuts read messages exactly as the long way does (decision 0029).

* A repetition with no escape character, no sub-component separator and only ASCII text is
  read "plain" (each component as it stands, stripped); :meth:`Composite.values` reads every
  component at once. Both must give what :meth:`Composite.c` gives the long way.
* :func:`parse_message` remembers the delimiters and what the header takes from the MSH
  fields a feed repeats (MSH-3 to MSH-6, 9, 11, 12, 15, 16, 18); the header must be what
  reading those fields afresh gives, for a first message and for any later one.
* The mapped output of every conformance sample and of the benchmark's traffic is pinned
  by a digest (``hl7v2_mapping_digests.json``, recorded before these shortcuts were made),
  so any change to a resource, an issue or an acknowledgement shows here. After a
  deliberate mapping change, rewrite it with ``SHAREDCARE_WRITE_DIGESTS=1`` and review the
  diff of the mapping tests that explain the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.ingest.hl7v2 import ack as ack_module
from sharedcare.ingest.hl7v2 import parse as parse_module
from sharedcare.ingest.hl7v2.ack import AckDecision
from sharedcare.ingest.hl7v2.errors import Hl7ParseError, MappingError, Severity
from sharedcare.ingest.hl7v2.fields import Composite, Delimiters, SegmentView
from sharedcare.ingest.hl7v2.listener import acknowledge
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader, ParsedMessage, parse_message
from tests.support.hl7_traffic import message

CONFORMANCE = Path("/work/shared/conformance/hl7v2")
if not CONFORMANCE.is_dir():
    CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "hl7v2"
DIGESTS = Path(__file__).with_name("hl7v2_mapping_digests.json")

_CHARS = st.sampled_from([*"|^~\\&AB 1.\t", "\u00a0", "é", "\\F\\", "\\X41\\", "\\E\\"])


def _long_way(rep: Composite) -> Composite:
    """The same repetition, to be read without the plain shortcut."""
    return Composite(list(rep._comps), rep._esc, rep._separators, rep._sub, plain=False)


def _check_field_reads(text: str, delimiters: Delimiters) -> None:
    view = SegmentView(text, 1, delimiters)
    for n in range(0, len(view) + 3):
        for rep in view.reps(n):
            slow = _long_way(rep)
            width = len(rep)
            for comp in range(0, width + 2):
                for sub in range(0, 4):
                    assert rep.c(comp, sub) == slow.c(comp, sub), (text, n, comp, sub)
            expected = [slow.c(i) for i in range(1, width + 1)]
            assert rep.values() == expected
            assert slow.values() == expected
            assert rep.values(width + 3) == [*expected, "", "", ""]
            assert rep.is_empty() == slow.is_empty()


@settings(max_examples=400, deadline=None)
@given(
    seg_id=st.sampled_from(["PID", "OBX", "MSH"]),
    body=st.lists(_CHARS, max_size=40).map("".join),
)
def test_plain_and_whole_repetition_reads_match_the_long_way(seg_id: str, body: str) -> None:
    prefix = "MSH|^~\\&|" if seg_id == "MSH" else seg_id + "|"
    _check_field_reads(prefix + body, Delimiters())


def test_a_field_with_escapes_or_sub_components_is_not_read_plain() -> None:
    view = SegmentView("PID|a^b|c\\F\\d^e|f&g^h|é^i", 1, Delimiters())
    assert view.rep(1)._plain
    assert [view.rep(n)._plain for n in (2, 3, 4)] == [False, False, False]
    assert view.rep(2).values() == ["c|d", "e"]
    assert view.rep(3).values(3) == ["f", "h", ""]
    assert view.reps(9) == [] and view.v(9) == ""


def test_benchmark_and_conformance_fields_read_alike() -> None:
    texts = [message(i) for i in range(40)] + [
        text for _, text in _conformance_messages() if text.startswith("MSH") and len(text) > 8
    ]
    for text in texts:
        delimiters = Delimiters.from_msh(text)
        for segment in text.split("\r"):
            if segment:
                _check_field_reads(segment, delimiters)


def _fresh_header(text: str) -> dict[str, Any]:
    """What parse_message's header holds, read from a new MSH view without any memory."""
    delimiters = Delimiters.from_msh(text)
    msh = SegmentView(text.split("\r", 1)[0], 1, delimiters)
    hds = {n: parse_module._hd(msh, n) for n in (3, 4, 5, 6)}
    return {
        "sending_application": hds[3][1],
        "sending_facility": hds[4][1],
        "receiving_application": hds[5][1],
        "receiving_facility": hds[6][1],
        "message_code": msh.v(9, 1).upper(),
        "trigger_event": msh.v(9, 2).upper(),
        "structure": msh.v(9, 3).upper(),
        "control_id": msh.v(10),
        "processing_id": msh.v(11),
        "version": msh.v(12),
        "timestamp": msh.v(7),
        "charset": msh.v(18),
        "accept_ack_type": msh.v(15),
        "application_ack_type": msh.v(16),
        "sending_application_hd": hds[3][0],
        "sending_facility_hd": hds[4][0],
        "receiving_application_hd": hds[5][0],
        "receiving_facility_hd": hds[6][0],
    }


def _header_of(text: str) -> MessageHeader | None:
    try:
        return parse_message(text).header
    except Hl7ParseError as error:
        header: MessageHeader | None = error.header
        return header


def test_the_header_is_what_reading_msh_afresh_gives() -> None:
    texts = [message(i) for i in range(30)] + [text for _, text in _conformance_messages()]
    for text in texts:
        first = _header_of(text)
        if first is None:
            continue
        assert dataclasses.asdict(first) == _fresh_header(text), text[:40]
        assert _header_of(text) == first  # read again, from what was remembered
    parse_module._STATIC_MSH.clear()
    parse_module._MSH_DELIMITERS.clear()
    for text in texts[:5]:
        header = _header_of(text)
        assert header is not None and dataclasses.asdict(header) == _fresh_header(text)


def test_remembered_msh_fields_do_not_leak_between_messages() -> None:
    base = "MSH|^~\\&|LAB|RBD|SC|ICS|20240101101500||ORU^R01^ORU_R01|C1|P|2.5.1\rPID|1||H1"
    first = parse_message(base).header
    second = parse_message(base.replace("20240101101500", "202402").replace("|C1|", "|C2|")).header
    assert (first.control_id, first.timestamp) == ("C1", "20240101101500")
    assert (second.control_id, second.timestamp) == ("C2", "202402")
    assert second.sending_application_hd == ("LAB",)
    other = parse_message(base.replace("ORU^R01^ORU_R01|C1|P|2.5.1", "ADT^A08|C3|T|2.4")).header
    assert (other.message_code, other.trigger_event, other.structure) == ("ADT", "A08", "")
    assert (other.processing_id, other.version) == ("T", "2.4")
    hashes = parse_message(base.replace("MSH|^~\\&|", "MSH#^~\\&#").replace("|", "#")).header
    assert hashes.sending_application == "LAB" and hashes.control_id == "C1"
    escaped = parse_message(base.replace("|LAB|", "|L\\F\\B^X|")).header
    assert escaped.sending_application_hd == ("L|B", "X")


def _conformance_messages() -> list[tuple[str, str]]:
    from sharedcare.ingest.hl7v2.parse import decode, split_payload

    out = []
    for path in sorted(CONFORMANCE.glob("*.hl7")):
        text, _ = decode(path.read_bytes())
        for one in split_payload(text).messages:
            out.append((path.name, one))
    return out


class _MappingSink:
    """Maps as the database sink does, and keeps what it mapped."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        return self._map(raw)

    async def accept_parsed(self, raw: bytes, parsed: ParsedMessage) -> AckDecision:
        """What the listener calls, as it does the database sink's."""
        return self._map(parsed)

    def _map(self, source: bytes | ParsedMessage) -> AckDecision:
        try:
            mapped = map_message(source)
        except (MappingError, Hl7ParseError) as error:
            self.seen.append({"error": dataclasses.asdict(error.issue)})
            return AckDecision.error(error.issue)
        self.seen.append(
            {
                "resources": mapped.resources,
                "merges": [dataclasses.asdict(m) for m in mapped.merges],
                "issues": [dataclasses.asdict(i) for i in mapped.issues],
            }
        )
        return AckDecision.accept([i for i in mapped.issues if i.severity is not Severity.ERROR])


def _digest(block: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(ack_module, "_now", lambda: "20260101000000+0000")
    monkeypatch.setattr(ack_module, "_next_control_id", lambda: "ACK1")
    sink = _MappingSink()
    result = asyncio.run(acknowledge(block, sink))
    record = {"reply": result.reply.decode("latin-1"), "mapped": sink.seen}
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _blocks() -> dict[str, bytes]:
    blocks = {path.name: path.read_bytes() for path in sorted(CONFORMANCE.glob("*.hl7"))}
    blocks.update({f"benchmark-{i}": message(i).encode() for i in range(0, 300, 7)})
    return blocks


def test_mapped_output_and_acks_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    got = {name: _digest(block, monkeypatch) for name, block in _blocks().items()}
    if os.environ.get("SHAREDCARE_WRITE_DIGESTS") == "1":
        DIGESTS.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(DIGESTS.read_text())
    changed = sorted(name for name in expected if got.get(name) != expected[name])
    assert not changed, f"mapped output or ACK changed for: {changed}"
    assert sorted(got) == sorted(expected)
