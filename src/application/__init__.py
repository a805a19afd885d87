"""Use cases of conveyor and the ports they need from the outside world."""
