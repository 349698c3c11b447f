"""Care coordination: MDTs, referrals, discharge, virtual wards, waiting lists, diagnostics."""
