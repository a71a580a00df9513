"""Pool metrics and leak detection, collected with pool events."""
