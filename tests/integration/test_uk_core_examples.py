"""The UK Core examples (XML) convert, load and read back, on both databases.

``../shared/conformance/uk-core/examples`` holds 215 official UK Core examples. Each is
converted from XML with :func:`sharedcare.fhir.xml_format.xml_to_json`, written with a PUT
(update-as-create, keeping its id), and read back; what comes back must equal what was sent
apart from the server-set ``meta`` fields.

One example is invalid R4 and is expected to be refused with a specific OperationOutcome:
``Extension-UKCore-ConditionEpisode-Example`` gives one extension both ``valueCode`` and
``valueCodeableConcept``, and an R4 extension has exactly one ``value[x]``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sharedcare.api.app import create_app
from sharedcare.config import Settings
from sharedcare.fhir.xml_format import xml_to_json
from sharedcare.record.resources import same_content

INVALID = {"Extension-UKCore-ConditionEpisode-Example"}


def _examples(shared: Path) -> list[Path]:
    return sorted((shared / "conformance" / "uk-core" / "examples").glob("*.xml"))


def test_every_uk_core_example_loads_and_reads_back(database: str, shared_dir: Path) -> None:
    examples = _examples(shared_dir)
    assert len(examples) == 215
    loaded, refused = 0, []
    with TestClient(create_app(Settings(database_url=database))) as client:
        for path in examples:
            resource = xml_to_json(path.read_bytes())
            rtype, rid = resource["resourceType"], resource["id"]
            response = client.put(f"/fhir/{rtype}/{rid}", json=resource)
            if path.stem in INVALID:
                assert response.status_code == 400
                issue = response.json()["issue"][0]
                assert issue["code"] in {"structure", "invariant", "invalid"}
                refused.append(path.stem)
                continue
            assert response.status_code == 201, (path.name, response.text)
            back = client.get(f"/fhir/{rtype}/{rid}")
            assert back.status_code == 200
            assert same_content(back.json(), resource), path.name
            loaded += 1
    assert refused == sorted(INVALID)
    assert loaded == 214


@pytest.mark.parametrize("name", sorted(INVALID))
def test_the_invalid_example_is_refused_naming_the_path(shared_dir: Path, name: str) -> None:
    from sharedcare.fhir.validation import validate

    path = shared_dir / "conformance" / "uk-core" / "examples" / f"{name}.xml"
    issues = validate(xml_to_json(path.read_bytes()))
    assert any("extension" in issue.location for issue in issues)
