"""Spec: history at instance, type and system level, with ``_since``, ``_count`` and paging.

https://hl7.org/fhir/R4/http.html#history — entries newest first, each with what was done
(``request``) and its outcome (``response``); paging links carry a keyset ``_cursor`` so
that versions written while a client pages never shift the pages still to come
(https://hl7.org/fhir/R4/http.html#paging). Every case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

Key = tuple[str, str, int]  # (type, id, version)


def patient(id: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": family}]}


def practitioner(id: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": id, "name": [{"family": family}]}


def observation(id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def put(fhir: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = fhir.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in {200, 201}, response.text
    stored: dict[str, Any] = response.json()
    return stored


def history(fhir: TestClient, path: str, **params: Any) -> dict[str, Any]:
    response = fhir.get(path, params=params) if params else fhir.get(path)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    return bundle


def keys(bundle: dict[str, Any]) -> list[Key]:
    """(type, id, version) of each entry, from its fullUrl and etag."""
    out = []
    for entry in bundle.get("entry", []):
        rtype, id = entry["fullUrl"].split("/fhir/")[1].split("/")
        out.append((rtype, id, int(entry["response"]["etag"][3:-1])))
    return out


def cursor(direction: str, values: list[Any]) -> str:
    """A hand-made ``_cursor`` (the server's are opaque; these test its checks)."""
    return base64.urlsafe_b64encode(json.dumps([direction, values]).encode()).decode()


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def follow(fhir: TestClient, bundle: dict[str, Any], relation: str = "next") -> list[Key]:
    """Every version on this page and the pages its ``relation`` links lead to."""
    seen = keys(bundle)
    pages = 0
    while relation in links(bundle):
        pages += 1
        assert pages < 100, "paging does not end"
        bundle = history(fhir, links(bundle)[relation].split("testserver")[1])
        seen += keys(bundle)
    return seen


@pytest.fixture
def record(fhir: TestClient) -> list[Key]:
    """Two patients and an observation with updates and a deletion; every version, newest
    first (as system history lists them)."""
    put(fhir, practitioner("hist-a", "Able"))  # a1
    put(fhir, practitioner("hist-b", "Baker"))  # b1
    put(fhir, practitioner("hist-a", "Abel"))  # a2
    put(fhir, observation("hist-o", 60))  # o1
    assert fhir.delete("/fhir/Practitioner/hist-b").status_code == 204  # b2
    put(fhir, observation("hist-o", 72))  # o2
    put(fhir, practitioner("hist-a", "Ables"))  # a3
    return [
        ("Practitioner", "hist-a", 3),
        ("Observation", "hist-o", 2),
        ("Practitioner", "hist-b", 2),
        ("Observation", "hist-o", 1),
        ("Practitioner", "hist-a", 2),
        ("Practitioner", "hist-b", 1),
        ("Practitioner", "hist-a", 1),
    ]


LEVELS = [
    ("/fhir/Practitioner/hist-a/_history", lambda k: k[1] == "hist-a"),
    ("/fhir/Practitioner/hist-b/_history", lambda k: k[1] == "hist-b"),
    ("/fhir/Observation/hist-o/_history", lambda k: k[1] == "hist-o"),
    ("/fhir/Practitioner/_history", lambda k: k[0] == "Practitioner"),
    ("/fhir/Observation/_history", lambda k: k[0] == "Observation"),
    ("/fhir/_history", lambda k: True),
]


@pytest.mark.parametrize(("path", "wanted"), LEVELS)
def test_history_lists_every_version_newest_first(
    fhir: TestClient, record: list[Key], path: str, wanted: Any
) -> None:
    bundle = history(fhir, path)
    expected = [k for k in record if wanted(k)]
    assert keys(bundle) == expected
    assert bundle["total"] == len(expected)
    assert set(links(bundle)) == {"self"}
    stamps = [e["response"]["lastModified"] for e in bundle["entry"]]
    assert stamps == sorted(stamps, reverse=True)


def test_entries_say_what_was_done(fhir: TestClient) -> None:
    created = fhir.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    updated = put(fhir, patient(id, "Abel"))
    assert fhir.delete(f"/fhir/Patient/{id}").status_code == 204
    entries = history(fhir, f"/fhir/Patient/{id}/_history")["entry"]
    assert [(e["request"], e["response"]["status"], e["response"]["etag"]) for e in entries] == [
        ({"method": "DELETE", "url": f"Patient/{id}"}, "204 No Content", 'W/"3"'),
        ({"method": "PUT", "url": f"Patient/{id}"}, "200 OK", 'W/"2"'),
        ({"method": "POST", "url": "Patient"}, "201 Created", 'W/"1"'),
    ]
    assert all(e["fullUrl"].endswith(f"/fhir/Patient/{id}") for e in entries)
    assert "resource" not in entries[0]  # a deletion has no content
    assert entries[1]["resource"] == updated
    assert entries[1]["resource"]["name"][0]["family"] == "Abel"
    assert entries[1]["response"]["lastModified"] == updated["meta"]["lastUpdated"]
    assert entries[2]["resource"]["meta"]["versionId"] == "1"
    assert entries[2]["response"]["lastModified"] == created.json()["meta"]["lastUpdated"]


def test_deleted_and_recreated_resource_keeps_its_whole_history(fhir: TestClient) -> None:
    put(fhir, patient("hist-r", "Able"))
    assert fhir.delete("/fhir/Patient/hist-r").status_code == 204
    assert fhir.get("/fhir/Patient/hist-r").status_code == 410
    put(fhir, patient("hist-r", "Again"))
    entries = history(fhir, "/fhir/Patient/hist-r/_history")["entry"]
    assert [(e["request"]["method"], e["response"]["etag"]) for e in entries] == [
        ("PUT", 'W/"3"'),
        ("DELETE", 'W/"2"'),
        ("POST", 'W/"1"'),
    ]
    assert entries[0]["resource"]["name"][0]["family"] == "Again"
    assert entries[2]["resource"]["name"][0]["family"] == "Able"


def test_history_of_a_deleted_resource_is_served(fhir: TestClient) -> None:
    put(fhir, patient("hist-d", "Able"))
    fhir.delete("/fhir/Patient/hist-d")
    bundle = history(fhir, "/fhir/Patient/hist-d/_history")
    assert [e["request"]["method"] for e in bundle["entry"]] == ["DELETE", "POST"]


@pytest.mark.parametrize(("path", "wanted"), LEVELS)
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_next_links_visit_every_version_once(
    fhir: TestClient, record: list[Key], path: str, wanted: Any, count: int
) -> None:
    expected = [k for k in record if wanted(k)]
    first = history(fhir, path, _count=count)
    assert len(first["entry"]) == min(count, len(expected))
    assert "previous" not in links(first) and "first" not in links(first)
    assert ("next" in links(first)) == (len(expected) > count)
    assert follow(fhir, first) == expected
    bundle = first
    while "next" in links(bundle):
        bundle = history(fhir, links(bundle)["next"].split("testserver")[1])
        assert bundle["total"] == len(expected)
        assert {"self", "first", "previous"} <= set(links(bundle))
        assert "_cursor=" in links(bundle)["next" if "next" in links(bundle) else "self"]
        assert f"_count={count}" in links(bundle)["self"]


@pytest.mark.parametrize("path", ["/fhir/_history", "/fhir/Practitioner/_history"])
def test_previous_links_walk_back_to_the_first_page(
    fhir: TestClient, record: list[Key], path: str
) -> None:
    pages = [history(fhir, path, _count=2)]
    while "next" in links(pages[-1]):
        pages.append(history(fhir, links(pages[-1])["next"].split("testserver")[1]))
    assert len(pages) >= 2
    back = pages[-1]
    for expected in reversed(pages[:-1]):
        back = history(fhir, links(back)["previous"].split("testserver")[1])
        assert keys(back) == keys(expected)
    assert "previous" not in links(back)
    assert follow(fhir, pages[-1], "previous") == [
        k for page in reversed(pages) for k in keys(page)
    ]


@pytest.mark.parametrize(
    "path", ["/fhir/_history", "/fhir/Practitioner/_history", "/fhir/Practitioner/hist-a/_history"]
)
def test_pages_stay_stable_while_versions_are_written(
    fhir: TestClient, record: list[Key], path: str
) -> None:
    """New versions written after page 1 do not shift the older versions' pages: each is
    still seen exactly once (offset paging repeats page 1's last rows here)."""
    first = history(fhir, path, _count=2)
    seen = keys(first)
    # Meanwhile: updates (of resources both on page 1 and on later pages), a create, a delete.
    put(fhir, practitioner("hist-a", "Ablest"))
    put(fhir, practitioner("hist-a", "Ablerer"))
    put(fhir, practitioner("hist-c", "Cole"))
    put(fhir, observation("hist-o", 80))
    fhir.delete("/fhir/Practitioner/hist-c")
    bundle = first
    while "next" in links(bundle):
        bundle = history(fhir, links(bundle)["next"].split("testserver")[1])
        seen += keys(bundle)
    scope = {"/fhir/_history": "", "/fhir/Practitioner/_history": "Practitioner"}.get(
        path, "hist-a"
    )
    expected = [k for k in record if scope in {"", k[0], k[1]}]
    assert seen == expected
    # A fresh start sees the new versions first.
    fresh = follow(fhir, history(fhir, path, _count=2))
    assert fresh[len(fresh) - len(expected) :] == expected
    assert len(fresh) > len(expected)


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (0, [("Practitioner", "hist-a", 3)]),
        (1, [("Practitioner", "hist-a", 3), ("Practitioner", "hist-a", 2)]),
        (
            2,
            [
                ("Practitioner", "hist-a", 3),
                ("Practitioner", "hist-a", 2),
                ("Practitioner", "hist-a", 1),
            ],
        ),
    ],
)
def test_since_keeps_versions_at_or_after_it(
    fhir: TestClient, record: list[Key], which: int, expected: list[Key]
) -> None:
    everything = history(fhir, "/fhir/Practitioner/hist-a/_history")["entry"]
    since = everything[which]["response"]["lastModified"]
    bundle = history(fhir, "/fhir/Practitioner/hist-a/_history", _since=since)
    assert keys(bundle) == expected
    assert bundle["total"] == len(expected)
    assert "_since=" in links(bundle)["self"]
    paged = history(fhir, "/fhir/Practitioner/hist-a/_history", _since=since, _count=1)
    assert follow(fhir, paged) == expected  # _since is kept in the links


@pytest.mark.parametrize("path", [p for p, _ in LEVELS])
def test_since_in_the_future_is_an_empty_page(
    fhir: TestClient, record: list[Key], path: str
) -> None:
    bundle = history(fhir, path, _since="2999-01-01T00:00:00+01:00")
    assert bundle["total"] == 0
    assert "entry" not in bundle or bundle["entry"] == []
    assert "next" not in links(bundle)


def test_since_with_a_time_zone(fhir: TestClient, record: list[Key]) -> None:
    assert history(fhir, "/fhir/_history", _since="2000-01-01T01:00:00+01:00")["total"] == 7


@pytest.mark.parametrize(
    ("params", "status", "code", "says"),
    [
        ({"_since": "yesterday"}, 400, "invalid", "_since"),
        ({"_since": "2024-13-01T00:00:00Z"}, 400, "invalid", "_since"),
        ({"_count": "lots"}, 400, "invalid", "_count"),
        ({"_count": "1001"}, 400, "invalid", "_count"),
        ({"_count": "-1"}, 400, "invalid", "_count"),
        ({"_cursor": "not-a-cursor"}, 400, "invalid", "follow the links"),
        ({"_cursor": cursor("next", [1])}, 400, "invalid", "follow the links"),
        ({"_cursor": cursor("sideways", [1, "Patient", "a", 1])}, 400, "invalid", "_cursor"),
        ({"_cursor": cursor("next", [1, "Patient", "a", "x"])}, 400, "invalid", "_cursor"),
        ({"_cursor": cursor("next", ["1", "Patient", "a", 1])}, 400, "invalid", "_cursor"),
        (
            {"_cursor": cursor("next", [1, "Patient", "a", 1]), "_offset": "2"},
            400,
            "invalid",
            "both",
        ),
        ({"_at": "2024-01-01"}, 400, "invalid", "_at"),
        ({"_list": "x"}, 400, "invalid", "_list"),
        ({"_summary": "true"}, 400, "invalid", "_summary"),
    ],
)
@pytest.mark.parametrize("path", ["/fhir/_history", "/fhir/Patient/_history"])
def test_bad_parameters_get_an_operation_outcome(
    fhir: TestClient, path: str, params: dict[str, str], status: int, code: str, says: str
) -> None:
    response = fhir.get(path, params=params)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert says in outcome["issue"][0]["diagnostics"]


def test_a_search_cursor_is_refused(fhir: TestClient, record: list[Key]) -> None:
    put(fhir, practitioner("hist-c", "Cole"))
    search = fhir.get("/fhir/Practitioner?_count=1").json()
    theirs = links(search)["next"].split("_cursor=")[1].split("&")[0]
    response = fhir.get("/fhir/Practitioner/_history", params={"_cursor": theirs})
    assert response.status_code == 400
    assert "follow the links" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/fhir/Patient/no-such-patient/_history", 404, "not-found"),
        ("/fhir/Dragon/_history", 404, "not-supported"),
        ("/fhir/Dragon/1/_history", 404, "not-supported"),
    ],
)
def test_unknown_resources_and_types(
    fhir: TestClient, record: list[Key], path: str, status: int, code: str
) -> None:
    response = fhir.get(path)
    assert response.status_code == status, response.text
    assert response.json()["issue"][0]["code"] == code
    # With _since too: an absent resource is still 404, not an empty page.
    assert fhir.get(path, params={"_since": "2999-01-01T00:00:00Z"}).status_code == status


@pytest.mark.parametrize("params", [{"_count": "0"}, {"_summary": "count"}])
@pytest.mark.parametrize(
    ("path", "total"), [("/fhir/_history", 7), ("/fhir/Practitioner/_history", 5)]
)
def test_count_only(
    fhir: TestClient, record: list[Key], params: dict[str, str], path: str, total: int
) -> None:
    bundle = history(fhir, path, **params)
    assert bundle["total"] == total
    assert not bundle.get("entry")
    assert set(links(bundle)) == {"self"}


def test_an_empty_history(fhir: TestClient) -> None:
    bundle = history(fhir, "/fhir/Observation/_history")
    assert bundle["total"] == 0 and not bundle.get("entry")


def test_offset_is_still_accepted_and_links_use_cursors(
    fhir: TestClient, record: list[Key]
) -> None:
    bundle = history(fhir, "/fhir/_history", _count=2, _offset=3)
    assert keys(bundle) == record[3:5]
    assert "_offset=3" in links(bundle)["self"]
    assert "_offset" not in links(bundle)["next"] and "_cursor=" in links(bundle)["next"]
    assert follow(fhir, bundle) == record[3:]
    assert keys(history(fhir, links(bundle)["previous"].split("testserver")[1])) == record[1:3]


@pytest.mark.parametrize(
    ("path", "code", "pages"),
    [
        ("/fhir/Practitioner/hist-a/_history", "history-instance", 2),
        ("/fhir/Practitioner/_history", "history-type", 3),
        ("/fhir/_history", "history-system", 4),
    ],
)
def test_every_page_is_audited(
    fhir: TestClient, record: list[Key], path: str, code: str, pages: int
) -> None:
    """One AuditEvent per page fetched, with the level of history as its subtype."""
    assert len(follow(fhir, history(fhir, path, _count=2))) > 2 * (pages - 1)
    events = fhir.get("/fhir/AuditEvent", params={"subtype": code}).json()
    assert events["total"] == pages


@pytest.mark.parametrize(
    ("params", "problem"),
    [({"_since": "yesterday"}, "_since"), ({"_cursor": "not-a-cursor"}, "_cursor")],
)
def test_a_refused_history_request_is_audited_as_a_failure(
    fhir: TestClient, record: list[Key], params: dict[str, str], problem: str
) -> None:
    """A history request refused for a bad value still leaves its AuditEvent (outcome 4)."""
    response = fhir.get("/fhir/Practitioner/_history", params=params)
    assert response.status_code == 400, response.text
    assert problem in response.text
    events = fhir.get("/fhir/AuditEvent", params={"subtype": "history-type", "outcome": "4"}).json()
    assert events["total"] == 1
