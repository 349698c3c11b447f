"""Population-health analytics: SQL-on-FHIR v2 views, indicators and disclosure control."""
