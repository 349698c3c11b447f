"""The shared care record: FHIR repository, SQL store, search, history, transactions."""
