"""Performance harness: mock upstream, floor proxy, load generator, report."""
