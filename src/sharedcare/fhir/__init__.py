"""FHIR R4 (4.0.1) definitions, validation, references and bundles.

Pure code: no database and no web framework.
"""
