"""FHIR R4 (4.0.1) definitions, validation, search indexing, references and formats.

Pure code: no database and no web framework. Everything here works on plain
``dict`` resources parsed with orjson.

Main entry points:

* :func:`sharedcare.fhir.validation.validate` and
  :func:`sharedcare.fhir.validation.operation_outcome`;
* :func:`sharedcare.fhir.search_index.extract_index`;
* :mod:`sharedcare.fhir.definitions` (resource types, element model, search parameters,
  Patient compartment);
* :mod:`sharedcare.fhir.references` (parse, iterate, rewrite references);
* :func:`sharedcare.fhir.xml_format.xml_to_json`.
"""
