"""Guard: patient data never reaches a log line.

The application is driven with sentinel patient values (names, an NHS number, a date of
birth) in paths, query strings, headers and bodies, on every route, with logging at DEBUG
and SQL echo on. Every line written to the process's stderr and to the root logger is
then searched for the sentinels. Later issues add their endpoints to ``REQUESTS``.
"""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.logs import configure_logging

SENTINEL_NAME = "Quillfeather"
SENTINEL_GIVEN = "Zenobia"
SENTINEL_NHS = "9990001236"
SENTINEL_DOB = "1931-02-29"  # not a real date either: also exercises validation paths
SENTINELS = (SENTINEL_NAME, SENTINEL_GIVEN, SENTINEL_NHS, "999 000 1236", SENTINEL_DOB)

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SENTINEL_NHS}],
    "name": [{"family": SENTINEL_NAME, "given": [SENTINEL_GIVEN]}],
    "birthDate": SENTINEL_DOB,
}

REQUESTS: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/", {}),
    ("GET", "/healthz", {"params": {"name": SENTINEL_NAME}}),
    ("GET", "/readyz", {"headers": {"X-Patient": SENTINEL_NAME}}),
    ("GET", f"/Patient/{SENTINEL_NHS}", {}),
    ("GET", "/fhir/Patient", {"params": {"identifier": SENTINEL_NHS, "family": SENTINEL_NAME}}),
    ("POST", "/fhir/Patient", {"json": PATIENT}),
    ("PUT", f"/fhir/Patient/{SENTINEL_NAME}", {"json": PATIENT}),
    ("POST", "/fhir", {"content": b"{not json " + SENTINEL_NAME.encode()}),
    # Refusals before the record's gate, each audited by the HTTP layer (decision 0024).
    ("GET", f"/fhir/{SENTINEL_NAME}", {"params": {"identifier": SENTINEL_NHS}}),
    ("GET", "/fhir/_history", {"params": {"_count": SENTINEL_NHS, "_at": SENTINEL_DOB}}),
    ("PATCH", f"/fhir/Patient/{SENTINEL_NAME}", {"json": PATIENT}),
    (
        "POST",
        "/fhir/Patient",
        {"content": SENTINEL_NAME, "headers": {"Content-Type": f"text/{SENTINEL_NAME}"}},
    ),
    ("GET", "/api/feeds", {"params": {"name": SENTINEL_NAME}}),
]


def test_no_sentinel_reaches_the_logs(
    database: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("DEBUG", json=True)
    caplog.set_level(logging.DEBUG)
    settings = Settings(database_url=database, sql_echo=True, log_level="DEBUG")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            for method, path, kwargs in REQUESTS:
                client.request(method, path, **kwargs)  # type: ignore[arg-type]
    finally:
        logging.getLogger().handlers.clear()
    captured = capfd.readouterr()
    written = captured.out + captured.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "sharedcare.access" in written, "the access log must be part of what is checked"
    leaked = [s for s in SENTINELS if s in written]
    assert leaked == [], "patient data reached a log line"


HL7_WITH_SENTINELS = "\r".join(
    [
        "MSH|^~\\&|PAS|RBD|SHAREDCARE|ICS|20260101120000||ADT^A01|SENT0001|P|2.4",
        f"PID|1||H123456^^^RBD^MR~{SENTINEL_NHS}^^^NHS^NH||{SENTINEL_NAME}^{SENTINEL_GIVEN}"
        "||19310228|F|||1 Sentinel Street^^Dorchester^^DT1 1AA",
        "PV1|1|I|WARD1^BED2^^RBD||||C123^Consultant^Named|||MED",
        # A second, malformed message: errors must name fields, not values.
        "MSH|^~\\&|PAS|RBD|SHAREDCARE|ICS|20260101120001||ADT^A01|SENT0002|P|2.4",
        f"PID|1||||{SENTINEL_NAME}^{SENTINEL_GIVEN}||not-a-date|Q",
    ]
).encode()


def test_no_sentinel_reaches_the_logs_through_hl7(
    database: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from sharedcare.db.engine import create_engine
    from sharedcare.ingest.hl7v2.listener import acknowledge
    from sharedcare.ingest.sink import DatabaseSink

    configure_logging("DEBUG", json=True)
    caplog.set_level(logging.DEBUG)
    engine = create_engine(database, echo=True)

    async def run() -> None:
        async with DatabaseSink(engine) as sink:
            for block in HL7_WITH_SENTINELS.split(b"MSH|")[1:]:
                await acknowledge(b"MSH|" + block, sink)
            await sink.drain()

    try:
        asyncio.run(run())
    finally:
        engine.dispose()
        logging.getLogger().handlers.clear()
    captured = capfd.readouterr()
    written = captured.out + captured.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "sharedcare" in written, "the ingest path must have logged something to check"
    leaked = [s for s in SENTINELS if s in written]
    assert leaked == [], "patient data reached a log line"
