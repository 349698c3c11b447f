"""Fuzzing: malformed HL7 gets a NACK (or an ACK), never an exception or an internal error.

The sink maps every message, so the mapping code is fuzzed too: any exception other than a
MappingError would surface as the listener's internal-error AR, which these tests forbid.
"""

from __future__ import annotations

import asyncio

import hl7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedcare.ingest.hl7v2.ack import AckCode, AckDecision
from sharedcare.ingest.hl7v2.listener import INTERNAL_ERROR_REASON, BlockResult, acknowledge
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader

SEEDS = [
    "MSH|^~\\&|PAS|RBCH|SC|ICS|20240315101500||ADT^A02|C1|P|2.4\r"
    "EVN|A02|20240316120000\r"
    "PID|1||H100^^^RBCH^MR~9434765919^^^NHS^NH||OCTAVIA^PRIMROSE||19650412|F|||1 QUAY RD^^POOLE\r"
    "PD1|||PRACTICE^^^^^ODS^^^^J81001|G1^GP^A^^^DR^^^GMP\r"
    "NK1|1|OCTAVIA^JAMES|SPO^Spouse^HL70063|1 QUAY RD|01202 333444\r"
    "PV1|1|I|W14^A^1^RBCH|||W12^B^3^RBCH|D1^DOC^A|||||||||||||V555^^^RBCH^VN",
    "MSH|^~\\&|LAB|DCH|SC|ICS|20240401120000||ORU^R01^ORU_R01|R1|P|2.5.1\r"
    "PID|1||D200^^^DCH^MR||LINDQVIST^ASTRID||19500202|F\r"
    "OBR|1|P77^ICE|F88^LAB|UE^U and E^L|||20240401083000|||||||||||||||||CT|F\r"
    "OBX|1|NM|2951-2^Sodium^LN||131|mmol/L^^UCUM|133-146|L|||F|||20240401090000\r"
    "NTE|1||note\r"
    "OBX|2|SN|2823-3^Potassium^LN||<^2.5|mmol/L|3.5-5.3|LL|||C\r"
    "OBX|3|TX|&IMP^Impression||Normal.||||||F\r"
    "SPM|1|S1&DCH^S9&LAB||119297000^Blood^SCT|||||||||||||20240401080000",
    "MSH|^~\\&|ICE|GP|LAB|DCH|20240405090000||OML^O21^OML_O21|O1|P|2.5.1\r"
    "PID|1||G300^^^GP^MR||FENWICK^OSWALD||19420707|M\r"
    "ORC|NW|PL500^ICE||GRP1^ICE|||||20240405085500|||G1^GREEN^GRACE\r"
    "OBR|1|PL500^ICE||HBA1C^HbA1c^L|||20240406090000\r"
    "OBX|1|NM|8339-4^Birthweight^LN||3200|g||||||F\r"
    "DG1|1||E11.9^Diabetes^I10",
    "BHS|^~\\&|PAS|RBCH\r"
    "MSH|^~\\&|PAS|RBCH|SC|ICS|20240315101500||ADT^A40|C2|P|2.5\r"
    "PID|1||H100^^^RBCH^MR\rMRG|H099^^^RBCH^MR\rBTS|1",
]
DELIMITERS = "|^~\\&\r\n"


class MappingSink:
    """Test sink that maps every message it is given (the real sink will too)."""

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        return AckDecision.accept(map_message(raw).issues)


def check(block: bytes) -> BlockResult:
    result = asyncio.run(acknowledge(block, MappingSink()))
    assert result.results
    for message_result in result.results:
        decision = message_result.decision
        assert decision.code in (AckCode.ACCEPT, AckCode.ERROR, AckCode.REJECT)
        assert decision.reason != INTERNAL_ERROR_REASON
        if decision.code is not AckCode.ACCEPT:
            assert decision.reason
        ack = hl7.parse(message_result.ack)
        assert str(ack.segment("MSA")[1]) == decision.code.value
    assert result.reply
    return result


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate", "swap"]))
        pos = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        elif op == "insert":
            junk = draw(
                st.text(
                    alphabet=st.sampled_from(DELIMITERS + "AZ09 .-+<>é\x00\x0b\x1c"), max_size=12
                )
            )
            text = text[:pos] + junk + text[pos:]
        elif op == "duplicate":
            text = text[:pos] + text[pos : pos + draw(st.integers(1, 80))] + text[pos:]
        elif op == "truncate":
            text = text[: max(pos, 1)]
        else:
            segments = text.split("\r")
            if len(segments) > 2:
                i = draw(st.integers(1, len(segments) - 1))
                j = draw(st.integers(1, len(segments) - 1))
                segments[i], segments[j] = segments[j], segments[i]
                text = "\r".join(segments)
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_never_crash(block: bytes) -> None:
    check(block)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_rejected(block: bytes) -> None:
    result = check(block)
    if b"MSH" not in block.upper():
        assert result.codes == [AckCode.REJECT]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("MSHPIDOBXR123|^~\\&\r\n AZ"), max_size=40),
        min_size=1,
        max_size=8,
    )
)
def test_delimiter_soup_after_an_msh_start(parts: list[str]) -> None:
    block = ("MSH|^~\\&|" + "".join(parts)).encode()
    check(block)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SEEDS), st.sampled_from(["\r", "\n", "\r\n"]))
def test_separator_variants_answer_alike(seed: str, sep: str) -> None:
    baseline = check(seed.encode())
    variant = check(seed.replace("\r", sep).encode())
    assert variant.codes == baseline.codes
