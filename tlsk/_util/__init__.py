"""What every stage leans on: safe file writes and locks, size limits, scikit-learn
version shims, and the one memo of per-process caches. Imports no other tlsk package."""
