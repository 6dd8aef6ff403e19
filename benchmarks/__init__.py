"""qomon_async's benchmarks: ``python -m benchmarks`` (or ``nox -s bench``).

One module per measure (``docs/benchmarks.md`` says what each measures): ``bench_client_cost``,
``bench_budget``, ``bench_latency``, ``bench_memory``, ``bench_decode``, ``bench_processes``.
Each writes its numbers to ``benchmarks/results/NAME.json`` and renders a markdown table and a
PNG; ``results/README.md`` gathers them with the machine they came from. Benchmarks only
report: nothing here asserts a time.
"""
