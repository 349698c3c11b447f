"""Ingest: HL7 v2 over MLLP, FHIR bundles and CSV feeds into the record."""
