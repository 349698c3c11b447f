"""Every sample in the shared HL7 v2 conformance folder gets an ACK or a reasoned NACK.

The files (../shared/conformance/hl7v2) are real messages from several senders, with LF, CR
and CRLF separators, batch and file envelopes, and some deliberately broken ones. Each must
be answered without an exception; the expected answer per file is pinned below, and every
NACK must say why without echoing patient data.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import hl7
import pytest

from sharedcare.fhir.validation import validate
from sharedcare.ingest.hl7v2.ack import AckCode, AckDecision
from sharedcare.ingest.hl7v2.listener import INTERNAL_ERROR_REASON, acknowledge
from sharedcare.ingest.hl7v2.mapping import MappedMessage, map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader, normalise_segments

CONFORMANCE = Path("/work/shared/conformance/hl7v2")
if not CONFORMANCE.is_dir():
    CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "hl7v2"

EXPECTED_CODES = {
    "cdc-ti__CA__001_CA_OML_O21.hl7": "AA",
    "cdc-ti__CA__002_CA_ORU_R01.hl7": "AE",
    "cdc-ti__CA__003_CA_ORU_R01_CDPH_produced_0_initial_message.hl7": "AA",
    "cdc-ti__CA__003_CA_ORU_R01_CDPH_produced_3_hl7_translation_final.hl7": "AA",
    "cdc-ti__CA__020_CA_ORU_R01_CDPH_OBX_to_LOINC_0_initial_message.hl7": "AA",
    "cdc-ti__Epic__001_Epic_ORM_O01.hl7": "AA",
    "cdc-ti__Epic__002_Epic_ORU_R01.hl7": "AA",
    "cdc-ti__LA__001_LA_ORM_O01_NBS.hl7": "AA",
    "cdc-ti__LA__003_LA_ORU_R01_NBS_obr_flatten_0_initial_message.hl7": "AA",
    "cdc-ti__MN__002_MN_OML_O21_NBS.hl7": "AA",
    "cdc-ti__MN__003_MN_ORM_O01_NBS.hl7": "AA",
    "cdc-ti__MN__003_MN_ORM_O01_NBS_simplified.hl7": "AA",
    "cdc-ti__MN__004_MN_ORU_R01_NBS_0_initial_message.hl7": "AA",
    "cdc-ti__MN__004_MN_ORU_R01_NBS_3_hl7_translation_final.hl7": "AA",
    "cdc-ti__MN__005_MN_ADT_A01.hl7": "AA",
    "cdc-ti__Natus__001_Natus_ACK.hl7": "AR",
    "cdc-ti__Natus__002_Natus_ORU_R01_NBS.hl7": "AA",
    "cdc-ti__NewSTEPs__001_NewSTEPs_OML_021.hl7": "AA",
    "cdc-ti__NewSTEPs__002_NewSTEPs_ORU_R01.hl7": "AA",
    "cdc-ti__Ochsner__001_Ochsner_OML_O21_0_initial_message.hl7": "AA",
    "cdc-ti__Ochsner__001_Ochsner_OML_O21_3_hl7_translation_final.hl7": "AA",
    "cdc-ti__Oracle__001_Oracle_ORM_O01.hl7": "AA",
    "cdc-ti__Oracle__003_Oracle_ORM_O01.hl7": "AA",
    "cdc-ti__Oracle__004_Oracle_ORU_R01.hl7": "AA",
    "cdc-ti__Oracle__005_Oracle_ORM_O01_2_3_non_NBS.hl7": "AA",
    "cdc-ti__Oracle__007_Oracle_OML_O21_NBS_for_second_twin.hl7": "AA",
    "cdc-ti__Other__001_ADT_A01.hl7": "AR",
    "cdc-ti__TN__001_TN_ORU_R01_LRI.hl7": "AA",
    "cdc-ti__TN__002_TN_OML_O21_NBS.hl7": "AA",
    "cdc-ti__TX__001_TX_OML_O21.hl7": "AR",
    "cdc-ti__TX__002_TX_ORU_R01.hl7": "AA",
    "cdc-ti__Test-Automated__002_Staging_ORU_O01_short_linked_to_001_ORM.hl7": "AR",
    "cdc-ti__Test-Automated__004_CA_ORU_R01_leading_zeroes.hl7": "AR",
    "cdc-ti__Test-Automated__008_ORU_R01_micro_character_encoding.hl7": "AR",
    "cdc-ti__Test-Automated__011_ORM_R01_nte_segment_mapping.hl7": "AR",
    "cdc-ti__Test-Orders__003_AL_OML_O21_NBS_Fully_Populated_3_hl7_translation_final.hl7": "AR",
    "cdc-ti__Test-Orders__003_AL_ORM_O01_NBS_Fully_Populated_0_initial_message.hl7": "AA",
    "cdc-ti__Test-Orders__003_AL_ORM_O01_NBS_Fully_Populated_3_hl7_translation_final.hl7": "AE",
    "cdc-ti__Test-Orders__007_AL_ORM_O01_NBS_Missing_Required_Fields_0_initial_message.hl7": "AR",
    "cdc-ti__Test-Results__005_AL_ORU_R01_NBS_Simplified_0_initial_message.hl7": "AA",
    "hapi__IsEmptyTest_ADT_A08.hl7": "AA",
    "hapi__SuperStructureTest_ADT_A04.hl7": "AA",
    "hapi__adt_a03.hl7": "AA",
    "hapi__cv.04_001_chem.hl7": "AR",
    "hapi__docs_ADT_A01.hl7": "AA",
    "hapi__example_oml_o21.hl7": "AA AA AR AR AA AR AA AR AR AA AR AR AA",
    "hapi__omd_o03.hl7": "AR",
    "hapi__segmentfinder_a24.hl7": "AR",
    "python-hl7__rep_sample_hl7.hl7": "AE",
    "python-hl7__sample_bad_batch.hl7": "AR",
    "python-hl7__sample_bad_batch1.hl7": "AR",
    "python-hl7__sample_bad_file.hl7": "AR",
    "python-hl7__sample_bad_file1.hl7": "AR",
    "python-hl7__sample_bad_file2.hl7": "AR",
    "python-hl7__sample_bad_file3.hl7": "AR",
    "python-hl7__sample_batch.hl7": "AA",
    "python-hl7__sample_batch1.hl7": "AA AA",
    "python-hl7__sample_batch2.hl7": "AA AA",
    "python-hl7__sample_batch3.hl7": "AA",
    "python-hl7__sample_batch4.hl7": "AA",
    "python-hl7__sample_file.hl7": "AA",
    "python-hl7__sample_file1.hl7": "AA AA AA",
    "python-hl7__sample_file2.hl7": "AA AA",
    "python-hl7__sample_file3.hl7": "AA",
    "python-hl7__sample_file4.hl7": "AA",
    "python-hl7__sample_file5.hl7": "AA",
    "python-hl7__sample_file6.hl7": "AA",
    "python-hl7__sample_hl7.hl7": "AA",
    "python-hl7__sample_msh.hl7": "AA",
}

EXPECTED_REASONS: dict[
    str, str | tuple[str, ...]
] = {  # file name (first 50 characters) -> words in the reason
    "cdc-ti__CA__002_CA_ORU_R01": "PID-3 holds no patient identifier",
    "cdc-ti__Natus__001_Natus_ACK": "ACK messages are acknowledgements",
    "cdc-ti__Other__001_ADT_A01": "MSH-12 version is not supported",
    "cdc-ti__TX__001_TX_OML_O21": "invalid segment id",
    "cdc-ti__Test-Automated__002_Staging_ORU_O01_short_": "MSH-11 processing id",
    "cdc-ti__Test-Automated__004_CA_ORU_R01_leading_zer": "MSH-11 processing id",
    "cdc-ti__Test-Automated__008_ORU_R01_micro_characte": "MSH-11 processing id",
    "cdc-ti__Test-Automated__011_ORM_R01_nte_segment_ma": "MSH-11 processing id",
    "cdc-ti__Test-Orders__003_AL_OML_O21_NBS_Fully_Popu": "MSH-11 processing id",
    "cdc-ti__Test-Orders__003_AL_ORM_O01_NBS_Fully_Popu": "OBX-3 observation identifier is empty",
    "cdc-ti__Test-Orders__007_AL_ORM_O01_NBS_Missing_Re": "MSH-3 sending application and MSH-4",
    "hapi__cv.04_001_chem": "message type ERP is not accepted",
    "hapi__example_oml_o21": ("OUL is not accepted", "ORL is not accepted", "MSH-10"),
    "hapi__omd_o03": "message type OMD is not accepted",
    "hapi__segmentfinder_a24": "ADT event A24 is not accepted",
    "python-hl7__rep_sample_hl7": "has no OBR segment",
    "python-hl7__sample_bad_batch": "segment 2 (EVN) is outside any message",
    "python-hl7__sample_bad_batch1": "follows BHS at segment 4",
    "python-hl7__sample_bad_file": "segment 3 (EVN) is outside any message",
    "python-hl7__sample_bad_file1": "follows BHS at segment 5",
    "python-hl7__sample_bad_file2": "FHS at segment 5 is not the first segment",
    "python-hl7__sample_bad_file3": "segment 2 (EVN) is outside any message",
}


class MappingSink:
    """Test sink: maps every message (as the database sink will) and keeps it in memory."""

    def __init__(self) -> None:
        self.mapped: dict[tuple[str, str, str], MappedMessage] = {}

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        mapped = map_message(raw)
        duplicate = header.idempotency_key in self.mapped
        self.mapped[header.idempotency_key] = mapped
        return AckDecision.accept(mapped.issues, duplicate=duplicate)


def _family_names(raw: bytes) -> set[str]:
    names = set()
    for seg in normalise_segments(raw.decode("utf-8", errors="replace")):
        if seg.startswith("PID|"):
            fields = seg.split("|")
            if len(fields) > 5:
                family = fields[5].split("^")[0].strip()
                if len(family) >= 4:
                    names.add(family)
    return names


def test_every_file_is_pinned() -> None:
    files = {p.name for p in CONFORMANCE.glob("*.hl7")}
    assert files == set(EXPECTED_CODES)
    assert len(files) >= 60


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
def test_file_gets_ack_or_reasoned_nack(name: str) -> None:
    raw = (CONFORMANCE / name).read_bytes()
    sink = MappingSink()
    result = asyncio.run(acknowledge(raw, sink))
    assert " ".join(code.value for code in result.codes) == EXPECTED_CODES[name]
    reply = result.reply.decode(result.codec)
    for message_result in result.results:
        ack = hl7.parse(message_result.ack)
        msa = ack.segment("MSA")
        decision = message_result.decision
        assert str(msa[1]) == decision.code.value
        assert decision.reason != INTERNAL_ERROR_REASON
        if decision.code is not AckCode.ACCEPT:
            assert decision.reason
            assert str(msa[3])
            assert ack.segments("ERR")
            expected = [
                r for k, r in EXPECTED_REASONS.items() if name.removesuffix(".hl7")[:50] == k
            ]
            assert len(expected) == 1, "every NACKed file has exactly one expected reason"
            fragments = expected[0] if isinstance(expected[0], tuple) else (expected[0],)
            assert any(fragment in decision.reason for fragment in fragments)
    for family in _family_names(raw):
        for message_result in result.results:
            if message_result.decision.code is not AckCode.ACCEPT:
                assert family not in message_result.ack
    if len(result.results) > 1:
        assert reply.startswith("BHS|")
        assert reply.endswith(f"BTS|{len(result.results)}")


@pytest.mark.parametrize(
    "name", sorted(n for n, codes in EXPECTED_CODES.items() if codes.split()[0] == "AA")
)
def test_accepted_files_map_deterministically(name: str) -> None:
    raw = (CONFORMANCE / name).read_bytes()
    first, second = MappingSink(), MappingSink()
    asyncio.run(acknowledge(raw, first))
    asyncio.run(acknowledge(raw, second))
    assert first.mapped
    for key, mapped in first.mapped.items():
        assert mapped.of_type("Patient")
        assert [r["id"] for r in mapped.resources] == [
            r["id"] for r in second.mapped[key].resources
        ]
        for resource in mapped.resources:
            assert resource["id"] and resource["resourceType"]
            errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
            assert errors == [], (resource["resourceType"], errors)
