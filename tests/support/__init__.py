"""Test support code (fixtures' helpers). Not product code."""
