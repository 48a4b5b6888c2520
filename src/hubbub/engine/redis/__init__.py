"""The distributed engine's Redis side: clients, the log, fan-out, presence, counters, worker."""
