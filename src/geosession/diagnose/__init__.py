"""Server-side diagnostics: activity, locks, EXPLAIN analysis."""
