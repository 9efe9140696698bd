"""Small shared utilities (atomic I/O, seeding, devices)."""
