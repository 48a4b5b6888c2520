"""The wire protocol, sans-I/O: client frames, server frames, HTTP bodies and the error codes."""
