"""Administration: banks, registrations, withdrawals, imports, exports and the audit log."""
