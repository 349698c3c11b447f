"""The opt-out wrapper keeps every column of the source it wraps."""

from __future__ import annotations

from sharedcare.analytics.optout import optout_source
from sharedcare.analytics.views.dialects import Source


def test_optout_source_keeps_the_text_column_spark_needs_for_decimal_boundaries() -> None:
    source = Source("resources", "resource", "resource_type", "resource_text")
    wrapped = optout_source("Observation", "spark", source)
    assert wrapped.text_column == "resource_text"
    assert wrapped.json_column == "resource"
    assert wrapped.type_column == "resource_type"
    assert "NOT EXISTS" in wrapped.relation
