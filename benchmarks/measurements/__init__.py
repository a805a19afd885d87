"""One module per measurement; each has NAME, applies_to(system) and run(...)."""
