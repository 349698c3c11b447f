"""Errors raised while validating, compiling or evaluating a ViewDefinition."""

from __future__ import annotations


class ViewDefinitionError(ValueError):
    """The ViewDefinition (or one of its FHIRPath expressions) is invalid.

    Messages name the offending element path (e.g. ``select[0].column[1].path``) and say how to
    fix it; they never include resource data.
    """


class ViewEvaluationError(RuntimeError):
    """Running a valid view failed in the SQL engine (e.g. a non-collection column saw 2 values)."""


#: Prefix of every error raised from inside generated SQL, so runners can tell our own
#: data-free messages apart from engine messages (which may quote resource content).
RUNTIME_ERROR_PREFIX = "sql-on-fhir: "
