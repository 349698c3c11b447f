"""Distil the official FHIR R4 (4.0.1) definition files into compact package data.

Run ``python -m sharedcare.fhir.definitions.build /work/shared/fhir-r4`` after the
definition files change. It reads:

* ``profiles-resources.json`` and ``profiles-types.json``: StructureDefinition snapshots
  (https://hl7.org/fhir/R4/structuredefinition.html) for the element model;
* ``fhir.schema.json``: the official JSON schema, for the primitive type regexes
  (https://hl7.org/fhir/R4/datatypes.html#primitive);
* ``valuesets.json``: ValueSets/CodeSystems, to expand every *required* binding
  (https://hl7.org/fhir/R4/terminologies.html#required);
* ``search-parameters.json``: every R4 SearchParameter (https://hl7.org/fhir/R4/searchparameter.html);
* ``compartmentdefinition-patient.json``: the Patient compartment
  (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

and writes two gzipped JSON files under ``data/``:

``model.json.gz``
    ``{"version", "resources": [names], "primitives": {name: regex|None},
    "types": {name: {"kind", "abstract", "base", "elements": [[path, [type codes], min,
    max, valueset-url|None, content-reference|None], ...]}},
    "valuesets": {url: {system: [codes]}}}``. Element paths are relative to the type
    (``"contact.name"``); the root element is left out.
``search.json.gz``
    ``{"params": {resource type: [[code, type, expression|None, [targets],
    [[component type, component expression], ...], url], ...]},
    "compartments": {"Patient": {resource type: [param codes]}}}``. Expressions keep only
    the ``|`` branches that apply to that resource type.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).with_name("data")
MODEL_FILE = "model.json.gz"
SEARCH_FILE = "search.json.gz"

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
# The official schema's unsignedInt pattern is not anchored as a whole; fix it here.
_PATTERN_FIXES = {"unsignedInt": "^(0|[1-9][0-9]*)$", "boolean": None}

Json = dict[str, Any]


def _load(path: Path) -> Json:
    with path.open("rb") as fh:
        data: Json = json.load(fh)
    return data


def _entries(bundle: Json) -> list[Json]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _type_code(t: Json) -> str:
    code: str = t["code"]
    if code.startswith("http://hl7.org/fhirpath/"):
        for ext in t.get("extension", []):
            if ext.get("url") == _FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri"))
        return _SYSTEM_TYPES.get(code, "string")
    return code


def _element_rows(sd: Json) -> list[list[Any]]:
    root = sd["type"]
    rows: list[list[Any]] = []
    for el in sd["snapshot"]["element"]:
        path: str = el["path"]
        if path == root:
            continue
        rel = path[len(root) + 1 :]
        if sd["kind"] == "primitive-type" and rel == "value":
            continue
        types = [_type_code(t) for t in el.get("type", [])]
        if sd["kind"] == "resource" and rel == "id":
            types = ["id"]  # the snapshot says System.String; the JSON schema says id
        binding = el.get("binding") or {}
        vs = None
        if binding.get("strength") == "required" and binding.get("valueSet"):
            vs = str(binding["valueSet"]).split("|", 1)[0]
        cref: str | None = el.get("contentReference")
        if cref:
            cref = cref.lstrip("#")
            cref = cref[len(root) + 1 :] if cref.startswith(root + ".") else cref
        rows.append([rel, types, int(el.get("min", 0)), str(el.get("max", "*")), vs, cref])
    return rows


def _flatten_concepts(concepts: list[Json], parent: list[str], out: dict[str, list[str]]) -> None:
    for c in concepts:
        code = c["code"]
        out[code] = list(parent)
        _flatten_concepts(c.get("concept", []), [*parent, code], out)


class _Expander:
    """Expands ValueSets over the CodeSystems shipped with the R4 definitions."""

    def __init__(self, valuesets: list[Json], codesystems: list[Json]) -> None:
        self.vs = {v["url"]: v for v in valuesets}
        self.cs: dict[str, dict[str, list[str]]] = {}
        for cs in codesystems:
            if cs.get("content") not in (None, "complete"):
                continue
            flat: dict[str, list[str]] = {}
            _flatten_concepts(cs.get("concept", []), [], flat)
            self.cs[cs["url"]] = flat

    def expand(self, url: str, depth: int = 0) -> dict[str, set[str]] | None:
        vs = self.vs.get(url)
        if vs is None or depth > 8:
            return None
        compose = vs.get("compose")
        if not compose:
            return None
        result: dict[str, set[str]] = {}
        for inc in compose.get("include", []):
            part = self._include(inc, depth)
            if part is None:
                return None
            for system, codes in part.items():
                result.setdefault(system, set()).update(codes)
        for exc in compose.get("exclude", []):
            part = self._include(exc, depth)
            if part is None:
                return None
            for system, codes in part.items():
                result.get(system, set()).difference_update(codes)
        return result

    def _include(self, inc: Json, depth: int) -> dict[str, set[str]] | None:
        result: dict[str, set[str]] = {}
        for imported in inc.get("valueSet", []):
            sub = self.expand(imported.split("|", 1)[0], depth + 1)
            if sub is None:
                return None
            for system, codes in sub.items():
                result.setdefault(system, set()).update(codes)
        inc_system: str | None = inc.get("system")
        if not inc_system:
            return result
        system = inc_system
        if "concept" in inc:
            result.setdefault(system, set()).update(c["code"] for c in inc["concept"])
            return result
        flat = self.cs.get(system)
        if flat is None:
            return None
        codes = set(flat)
        for flt in inc.get("filter", []):
            op, value = flt.get("op"), flt.get("value")
            if flt.get("property") != "concept" or op not in ("is-a", "descendent-of"):
                return None
            below = {c for c, parents in flat.items() if value in parents}
            codes &= below | ({value} if op == "is-a" else set())
        result.setdefault(system, set()).update(codes)
        return result


def _split_union(expr: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    quoted = False
    for i, ch in enumerate(expr):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


def _branch_applies(branch: str, rtype: str, all_types: set[str]) -> bool:
    head = re.match(r"^\(*([A-Za-z]+)", branch)
    if not head:
        return False
    name = head.group(1)
    if name in all_types or name in ("Resource", "DomainResource"):
        return name in (rtype, "Resource", "DomainResource")
    return True  # relative expression such as ``name | alias``


def build_model(src: Path) -> Json:
    """Return the distilled element model (see the module docstring)."""
    resources = [
        sd
        for sd in _entries(_load(src / "profiles-resources.json"))
        if sd["resourceType"] == "StructureDefinition" and sd.get("kind") == "resource"
    ]
    types = [
        sd
        for sd in _entries(_load(src / "profiles-types.json"))
        if sd["resourceType"] == "StructureDefinition" and sd.get("derivation") != "constraint"
    ]
    schema = _load(src / "fhir.schema.json")["definitions"]
    primitives: dict[str, str | None] = {}
    out_types: dict[str, Json] = {}
    for sd in types + resources:
        name = sd["type"] if sd.get("kind") != "primitive-type" else sd["id"]
        if sd.get("kind") == "primitive-type":
            pattern = schema.get(name, {}).get("pattern")
            primitives[name] = _PATTERN_FIXES.get(name, pattern)
        out_types[name] = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "elements": _element_rows(sd),
        }
    vsets = _entries(_load(src / "valuesets.json"))
    expander = _Expander(
        [r for r in vsets if r["resourceType"] == "ValueSet"],
        [r for r in vsets if r["resourceType"] == "CodeSystem"],
    )
    needed = {row[4] for t in out_types.values() for row in t["elements"] if row[4]}
    valuesets: dict[str, dict[str, list[str]]] = {}
    for url in sorted(needed):
        expanded = expander.expand(url)
        if expanded:
            valuesets[url] = {s: sorted(c) for s, c in sorted(expanded.items())}
    resource_names = sorted(
        sd["type"] for sd in resources if not sd.get("abstract") and sd["type"] != "Resource"
    )
    return {
        "version": "4.0.1",
        "resources": resource_names,
        "primitives": primitives,
        "types": out_types,
        "valuesets": valuesets,
        "unexpanded_valuesets": sorted(needed - set(valuesets)),
    }


def build_search(src: Path, model: Json) -> Json:
    """Return the distilled SearchParameters and Patient compartment."""
    resources: list[str] = model["resources"]
    all_types = set(resources)
    domain = {r for r in resources if model["types"][r]["base"] == "DomainResource"}
    sps = [r for r in _entries(_load(src / "search-parameters.json"))]
    by_url = {sp["url"]: sp for sp in sps}
    params: dict[str, list[list[Any]]] = {r: [] for r in resources}
    for sp in sps:
        expr = sp.get("expression")
        components = [
            [by_url[c["definition"]]["type"], c["expression"]] for c in sp.get("component", [])
        ]
        for base in sp["base"]:
            targets = (
                resources
                if base == "Resource"
                else sorted(domain)
                if base == "DomainResource"
                else [base]
            )
            for rtype in targets:
                sub = None
                if expr:
                    branches = [
                        b for b in _split_union(expr) if _branch_applies(b, rtype, all_types)
                    ]
                    sub = " | ".join(branches) if branches else None
                    if sub is None:
                        continue
                params[rtype].append(
                    [sp["code"], sp["type"], sub, sp.get("target", []), components, sp["url"]]
                )
    for rows in params.values():
        rows.sort(key=lambda r: str(r[0]))
    comp = _load(src / "compartmentdefinition-patient.json")
    patient = {r["code"]: r["param"] for r in comp["resource"] if r.get("param")}
    return {"params": params, "compartments": {"Patient": patient}}


def _write(name: str, data: Json) -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    blob = gzip.compress(raw, compresslevel=9, mtime=0)
    (DATA_DIR / name).write_bytes(blob)
    return len(blob)


def main(argv: list[str]) -> int:
    """Build the package data from the directory of R4 definition files in ``argv[1]``."""
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        sys.stderr.write(
            "usage: python -m sharedcare.fhir.definitions.build DIR  "
            "(DIR holds the official FHIR R4 definition JSON files)\n"
        )
        return 2
    src = Path(argv[1])
    model = build_model(src)
    search = build_search(src, model)
    size_m = _write(MODEL_FILE, model)
    size_s = _write(SEARCH_FILE, search)
    n_params = sum(len(v) for v in search["params"].values())
    sys.stdout.write(
        f"{len(model['resources'])} resource types, {len(model['types'])} types, "
        f"{len(model['valuesets'])} required value sets expanded "
        f"({len(model['unexpanded_valuesets'])} not expandable), {n_params} search parameter "
        f"bindings; {MODEL_FILE} {size_m} bytes, {SEARCH_FILE} {size_s} bytes\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
