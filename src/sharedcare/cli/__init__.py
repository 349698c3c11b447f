"""Command-line delivery (typer + rich). No business logic."""
