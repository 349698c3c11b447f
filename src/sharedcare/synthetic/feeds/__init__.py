"""Organisation feeds: how each organisation's own systems would emit its view of its patients."""
