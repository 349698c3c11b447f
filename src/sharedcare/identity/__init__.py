"""Identity: NHS number checks and the master patient index (source and golden records)."""
