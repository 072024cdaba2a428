"""Review: people decide the ``review`` actions (the console), on a shared, compacted log."""
