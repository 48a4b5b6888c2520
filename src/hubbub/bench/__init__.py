"""The load generator behind `hubbub bench` and `benchmarks/run.py`.

Worker processes (`loadgen`) each drive many connections through a lean
WebSocket client (`wsclient`); the parent commands them through a `pool`,
reads measurement windows (`measure`) with the CPUs' state from `/proc`
(`procstat`), and runs `scenarios` whose figures `report` prints (the
side-by-side harness, benchmarks/run.py). `hubbub bench URL` (`command`) runs
the `suite` of scenarios against any server (`remote`), with `accounts` from
its API, and shows them (`output`).
"""

# A benchmark is one client machine with many users and connections: a node under test
# runs with its per-client limits off (the per-connection rate limits, and the counts of
# connections per user and per address, the rooms one user may create per hour), or
# they, not the node, set the figures.
UNLIMITED_ENV = {
    "HUBBUB_RATE_LIMIT": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "HUBBUB_ROOMS_PER_HOUR": "0",  # one account creates every room of a run
}
