"""qomon_async's benchmarks: ``python -m benchmarks`` (or ``nox -s bench``).

One module per measure of design.md section 8: ``bench_client_cost``, ``bench_budget``,
``bench_latency``, ``bench_memory``, ``bench_decode``. Each writes its numbers to
``benchmarks/results/NAME.json`` and renders a markdown table and a PNG; ``results/README.md``
gathers them with the machine they came from. Benchmarks only report: nothing here asserts a
time.
"""
