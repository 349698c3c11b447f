"""Logging: JSON lines and the NHS-number net."""

from __future__ import annotations

import logging

import orjson

from sharedcare.logs import JsonFormatter, RedactNhsNumbers


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("sharedcare.test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_writes_one_object_with_extras() -> None:
    line = JsonFormatter().format(_record("loaded %d resources", 42, feed="gp"))
    payload = orjson.loads(line)
    assert payload["message"] == "loaded 42 resources"
    assert payload["level"] == "INFO"
    assert payload["feed"] == "gp"
    assert "\n" not in line


def test_nhs_number_shapes_are_redacted() -> None:
    record = _record("lookup for %s and 943-476-5919 and 943 476 5919", "9434765919")
    RedactNhsNumbers().filter(record)
    message = record.getMessage()
    assert "9434765919" not in message
    assert "943-476-5919" not in message
    assert "943 476 5919" not in message
    assert message.count("[redacted]") == 3


def test_other_numbers_are_left_alone() -> None:
    record = _record("imported %d resources in %d ms", 1234567, 12345678901)
    RedactNhsNumbers().filter(record)
    assert record.getMessage() == "imported 1234567 resources in 12345678901 ms"
