"""Web delivery: the clinician portal and leaders' dashboards (NHS.UK design system)."""
