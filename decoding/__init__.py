"""Decoding-time suppression inside vLLM (mode: decode).

`decoding.memfree.MemFreeProcessor` is a vLLM v1 logits processor: for requests whose
`vllm_xargs` name Lethe policies it masks every next token that would complete a protected
token n-gram (MemFree decoding, Ippolito et al. 2023) or spell a banned literal. The engine
imports this package (`--logits-processors decoding.memfree:MemFreeProcessor`), so it depends
on nothing of the gateway: only PyYAML here and torch/vLLM/transformers in the processor.
"""

#: `vllm_xargs` key that names the policies to enforce: ["name@digest", ...].
POLICIES_ARG = "lethe_policies"
#: `vllm_xargs` key of the gateway's probe: the engine answers 400 with its index manifest.
PROBE_ARG = "lethe_probe"
#: The probe's answer starts with this, followed by a JSON object {policy name: digest}.
PROBE_REPLY = "lethe-decode index: "
#: Environment variable naming the policy directory the engine indexes at start-up.
POLICIES_ENV = "LETHE_DECODE_POLICIES"
#: The processor's fully qualified name, as given to `--logits-processors`.
PROCESSOR = "decoding.memfree:MemFreeProcessor"
