"""Actions: turn match verdicts into actions under each bank policy (→ eraser.actions)."""
