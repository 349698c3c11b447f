"""HTTP delivery: the FastAPI application, its dependencies and routes. No business logic."""
