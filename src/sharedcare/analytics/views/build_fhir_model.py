"""Build the compact FHIR R4 element model used by the view compiler.

The compiler needs, for every resource and data type, the name, type(s) and cardinality of
each element (https://hl7.org/fhir/R4/elementdefinition.html). This module distils the official
R4 StructureDefinitions into ``data/fhir_r4_elements.json``, which ships inside the package.

Run: ``python -m sharedcare.analytics.views.build_fhir_model /work/shared/fhir-r4``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
OUTPUT = Path(__file__).parent / "data" / "fhir_r4_elements.json"


def _type_code(code: str) -> str:
    if code.startswith(_SYSTEM_PREFIX):
        return code[len(_SYSTEM_PREFIX) :].lower()
    return code


def build(definitions_dir: Path) -> dict[str, Any]:
    """Return ``{"types": {TypeName: {element: [[type, ...], many]}}, "kinds": {...}}``.

    Backbone elements get a type named after their path (e.g. ``Patient.contact``);
    ``contentReference`` elements point at the referenced path's type.
    """
    types: dict[str, dict[str, list[Any]]] = {}
    kinds: dict[str, str] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((definitions_dir / name).read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint" or "snapshot" not in sd:
                continue
            kinds[sd["type"]] = sd["kind"]
            for el in sd["snapshot"]["element"]:
                path: str = el["path"]
                if "." not in path:
                    types.setdefault(path, {})
                    continue
                owner, elem = path.rsplit(".", 1)
                many = el.get("max") != "1" and el.get("max") != "0"
                if el.get("max") == "0":
                    continue
                if "contentReference" in el:
                    codes = [el["contentReference"].lstrip("#")]
                else:
                    codes = [_type_code(t["code"]) for t in el.get("type", [])]
                    if codes in (["BackboneElement"], ["Element"]) and len(path.split(".")) > 1:
                        codes = [path]
                if elem.endswith("[x]"):
                    elem = elem[:-3]
                    entry_codes = codes
                    types.setdefault(owner, {})[elem] = [entry_codes, int(many), 1]
                else:
                    types.setdefault(owner, {})[elem] = [codes, int(many), 0]
    return {"types": types, "kinds": kinds}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write(
            "usage: python -m sharedcare.analytics.views.build_fhir_model FHIR_R4_DIR\n"
        )
        return 2
    model = build(Path(argv[0]))
    OUTPUT.write_text(json.dumps(model, separators=(",", ":"), sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
