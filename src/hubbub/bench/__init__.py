"""The load generator behind `hubbub bench` and `benchmarks/run.py`.

Worker processes (`loadgen`) each drive many connections through a lean
WebSocket client (`wsclient`); the parent commands them through a `pool`,
reads measurement windows (`measure`) with the CPUs' state from `/proc`
(`procstat`), and runs `scenarios` whose figures `report` prints (the
side-by-side harness, benchmarks/run.py). `hubbub bench URL` (`command`) runs
the `suite` of scenarios against any server (`remote`), with `accounts` from
its API, and shows them (`output`).
"""
