"""Write ``src/sharedcare/record/search/summary.json`` from the official R4 definitions.

For each resource type: its top-level elements marked ``isSummary`` (``_summary=true``) and
its top-level mandatory elements (``_summary=text`` and ``_elements`` keep them), from the
R4 StructureDefinitions (https://hl7.org/fhir/R4/search.html#summary).

Usage: ``python scripts/build_search_summary.py /work/shared/fhir-r4``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/sharedcare/record/search/summary.json"


def build(fhir_dir: Path) -> dict[str, dict[str, list[str]]]:
    """``{type: {"summary": [...], "mandatory": [...]}}`` from profiles-resources.json."""
    bundle = json.loads((fhir_dir / "profiles-resources.json").read_text())
    out: dict[str, dict[str, list[str]]] = {}
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource":
            continue
        if sd.get("abstract") or sd.get("derivation") == "constraint":
            continue
        rtype = sd["type"]
        summary, mandatory = [], []
        for element in sd["snapshot"]["element"]:
            path = element["path"].split(".")
            if len(path) != 2:
                continue
            name = path[1].removesuffix("[x]")
            if element.get("isSummary"):
                summary.append(name)
            if element.get("min", 0) >= 1:
                mandatory.append(name)
        out[rtype] = {"summary": summary, "mandatory": mandatory}
    return dict(sorted(out.items()))


if __name__ == "__main__":
    data = build(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fhir-r4"))
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(data)} resource types)")
