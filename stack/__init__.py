"""Running Lethe's stack on one machine: the offline model bundle (bundle), the vLLM engine
launcher (engine), `lethe up` (up), child processes that die with their owner (processes).
Used by the CLI, the tests, the benchmark and the evaluation; the gateway never imports it."""
