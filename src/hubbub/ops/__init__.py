"""Running hubbub: the command line, `hubbub cluster` and its HAProxy configuration."""
