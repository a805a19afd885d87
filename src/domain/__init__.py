"""Job entity, lifecycle rules and retry policy: pure code with no I/O and no clock."""
