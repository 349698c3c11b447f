"""FHIR XML to FHIR JSON conversion driven by the R4 element model.

Implements the mapping in https://hl7.org/fhir/R4/xml.html and
https://hl7.org/fhir/R4/json.html:

* repeating elements (max cardinality > 1) become arrays, others single values;
* primitive ``value`` attributes become JSON booleans, numbers or strings by FHIR type;
* ``id`` attributes and ``extension`` children of primitives go to the ``_name`` sibling
  (arrays padded with ``null`` to line up with the values);
* the XHTML ``div`` of a Narrative becomes an XHTML string;
* contained / nested resources (``<contained><Patient>...``) become resource objects;
* choice elements keep their typed names (``valueQuantity``).

Decimals become JSON numbers (``float`` unless integral), so trailing zeros such as
``1.50`` are not kept. Documents with a DOCTYPE are refused (no entity expansion).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from sharedcare.fhir.definitions import is_resource_type, node_for_type, node_of_prop
from sharedcare.fhir.definitions.model import ObjectNode, Prop

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_F = "{" + FHIR_NS + "}"
_X = "{" + XHTML_NS + "}"

_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


class XmlFormatError(ValueError):
    """The XML is not a FHIR R4 resource. ``location`` names the offending element."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


def xml_to_json(data: str | bytes) -> dict[str, Any]:
    """Convert one FHIR XML resource to its JSON form (a dict ready for orjson).

    Raises:
        XmlFormatError: If the XML is malformed or does not follow the R4 definitions; the
            message names the element path, never the data.
    """
    raw = data.encode() if isinstance(data, str) else data
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise XmlFormatError(
            "(document)", "DOCTYPE/ENTITY declarations are not allowed in FHIR XML."
        )
    try:
        root = ET.fromstring(raw)  # noqa: S314 - DTDs refused above, so no entity expansion
    except ET.ParseError as exc:
        raise XmlFormatError(
            "(document)", f"not well-formed XML (line {exc.position[0]}); check the markup."
        ) from None
    try:
        return _resource(root, None)
    except RecursionError:
        raise XmlFormatError("(document)", "elements are nested too deeply.") from None


def _local(tag: str, where: str) -> str:
    if not tag.startswith(_F):
        raise XmlFormatError(
            where, f'element is not in the FHIR namespace; declare xmlns="{FHIR_NS}".'
        )
    return tag[len(_F) :]


def _resource(elem: ET.Element, where: str | None) -> dict[str, Any]:
    rtype = _local(elem.tag, where or "(root)")
    if not is_resource_type(rtype):
        raise XmlFormatError(where or "(root)", "root element is not an R4 resource type.")
    node = node_for_type(rtype)
    assert node is not None
    obj: dict[str, Any] = {"resourceType": rtype}
    _fill(elem, node, obj, where or rtype)
    return obj


def _fill(elem: ET.Element, node: ObjectNode, obj: dict[str, Any], path: str) -> None:
    props = node.props
    for attr, value in elem.attrib.items():
        if attr in ("id", "url") and attr in props:
            obj[attr] = value
        elif not attr.startswith("{"):
            raise XmlFormatError(f"{path}@{attr}", "unknown attribute for this element.")
    prim_arrays: dict[str, tuple[list[Any], list[Any]]] = {}
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        if child.tag == _X + "div" and "div" in props:
            obj["div"] = _xhtml(child)
            continue
        name = _local(child.tag, f"{path}.?")
        loc = f"{path}.{name}"
        prop = props.get(name)
        if prop is None:
            raise XmlFormatError(loc, f"unknown element in {node.path}.")
        if prop.is_primitive:
            value, ext = _primitive(child, prop, loc)
            if prop.is_array:
                values, exts = prim_arrays.setdefault(name, ([], []))
                values.append(value)
                exts.append(ext)
            else:
                if name in obj or "_" + name in obj:
                    raise XmlFormatError(loc, "element repeats but its max cardinality is 1.")
                if value is not None:
                    obj[name] = value
                if ext is not None:
                    obj["_" + name] = ext
            continue
        value = _complex(child, prop, loc)
        if prop.is_array:
            obj.setdefault(name, []).append(value)
        elif name in obj:
            raise XmlFormatError(loc, "element repeats but its max cardinality is 1.")
        else:
            obj[name] = value
    for name, (values, exts) in prim_arrays.items():
        if any(v is not None for v in values):
            obj[name] = values
        if any(e is not None for e in exts):
            obj["_" + name] = exts


def _primitive(elem: ET.Element, prop: Prop, loc: str) -> tuple[Any, dict[str, Any] | None]:
    tc = prop.type_code
    if tc == "xhtml":
        raise XmlFormatError(loc, "xhtml must be a <div> in the XHTML namespace.")
    raw = elem.attrib.get("value")
    value: Any = None
    if raw is not None:
        value = _convert(raw, tc, loc)
    ext: dict[str, Any] = {}
    if "id" in elem.attrib:
        ext["id"] = elem.attrib["id"]
    element_node = node_for_type("Element")
    assert element_node is not None
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag, f"{loc}.?")
        if name != "extension":
            raise XmlFormatError(f"{loc}.{name}", "a primitive may only contain extensions.")
        ext.setdefault("extension", []).append(
            _complex(child, element_node.props["extension"], f"{loc}.extension")
        )
    if value is None and not ext:
        raise XmlFormatError(loc, "element has no value attribute and no extensions.")
    return value, (ext or None)


def _convert(raw: str, tc: str, loc: str) -> Any:
    if tc == "boolean":
        if raw not in ("true", "false"):
            raise XmlFormatError(loc, "boolean must be 'true' or 'false'.")
        return raw == "true"
    try:
        if tc in _INTEGER_TYPES:
            return int(raw)
        if tc == "decimal":
            if any(c in raw for c in ".eE"):
                return float(raw)
            return int(raw)
    except ValueError:
        raise XmlFormatError(loc, f"value is not a valid {tc}.") from None
    return raw


def _complex(elem: ET.Element, prop: Prop, loc: str) -> Any:
    if prop.type_code == "xhtml" or elem.tag == _X + "div":
        return _xhtml(elem)
    if prop.type_code == "Resource":
        kids = [c for c in elem if isinstance(c.tag, str)]
        if len(kids) != 1:
            raise XmlFormatError(loc, "must contain exactly one resource element.")
        return _resource(kids[0], loc)
    node = node_of_prop(prop)
    if node is None:
        raise XmlFormatError(loc, f"type {prop.type_code} is not an R4 data type.")
    obj: dict[str, Any] = {}
    _fill(elem, node, obj, loc)
    return obj


def _escape(text: str, attr: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if attr else text


def _xhtml(elem: ET.Element, top: bool = True) -> str:
    tag = elem.tag
    name = tag[len(_X) :] if tag.startswith(_X) else tag.rsplit("}", 1)[-1]
    attrs = [f' xmlns="{XHTML_NS}"'] if top else []
    for k, v in elem.attrib.items():
        key = "xml:" + k[len(_XML_NS) + 2 :] if k.startswith("{" + _XML_NS) else k
        attrs.append(f' {key}="{_escape(v, True)}"')
    parts = [f"<{name}{''.join(attrs)}>", _escape(elem.text or "")]
    for child in elem:
        if isinstance(child.tag, str):
            parts.append(_xhtml(child, top=False))
        parts.append(_escape(child.tail or ""))
    parts.append(f"</{name}>")
    return "".join(parts)
