"""OpenAI request models, field by field, and what each field may carry while policies run.

The gateway validates with these and then forwards the client's own JSON (patched). With no
active content policy, unknown fields pass through to vLLM as they are. While a policy is
active, only the fields in `CHAT_FIELDS` / `COMPLETION_FIELDS` are accepted, each with the
treatment named there (gateway.request_text applies them); anything else is refused.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _PassThrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_PassThrough):
    type: str
    text: str | None = None
    refusal: str | None = None
    thinking: str | None = None


class ChatMessage(_PassThrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None


class StreamOptions(_PassThrough):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class _SamplingFields(_PassThrough):
    model: str = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    echo: bool | None = False
    response_format: dict[str, Any] | None = None
    # vLLM's sampling extras.
    top_k: int | None = None
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None
    bad_words: list[str] | None = None
    allowed_token_ids: list[int] | None = None
    priority: int | None = None


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    documents: list[dict[str, str]] | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)


class Treat(Enum):
    """What the gateway does with a request field while a content policy is active."""

    #: A parameter (number, flag, enum, token ids, an identifier): it reaches neither the
    #: engine's prompt nor the output as text.
    PASS = "pass"
    #: Prompt text: screened by the input stage and redacted in place.
    PROMPT = "prompt"
    #: Text that constrains or cuts the output (stop strings, bad words, grammars, schemas,
    #: tool definitions): every string in it is screened by every filter of the active
    #: policies, and a hit refuses the request. Redacting it would answer "which of these
    #: candidates is protected?" (a stop list of ten numbers cut at the protected one).
    STEER = "steer"
    #: Structured fields walked by gateway.request_text with their own rules.
    MESSAGES = "messages"
    COMPLETION_PROMPT = "completion_prompt"
    DOCUMENTS = "documents"
    STREAM_OPTIONS = "stream_options"


_PASS, _STEER = Treat.PASS, Treat.STEER

#: Fields both endpoints accept while policies are active. Missing on purpose (refused):
#: `stop_token_ids` (a stop list in token ids: the stop-string oracle where no text filter can
#: look), `vllm_xargs`, `chat_template`, `chat_template_kwargs`, `mm_processor_kwargs`,
#: `media_io_kwargs` (free-form input to the template, processors and extensions),
#: `prompt_embeds` (a prompt no filter can read), `kv_transfer_params`/`ec_transfer_params`
#: (engine-internal state), `request_id` (the gateway names requests), `return_token_offsets`,
#: `return_prompt_text`, `mm_payload`, `return_mm_kwargs`, `routed_experts_prompt_start` (more
#: output channels), `repetition_detection`, and every field vLLM does not know.
COMMON_FIELDS: dict[str, Treat] = {
    "model": _PASS,  # checked against the served models
    "stream": _PASS,
    "stream_options": Treat.STREAM_OPTIONS,
    "n": _PASS,
    "use_beam_search": _PASS,
    "max_tokens": _PASS,
    "min_tokens": _PASS,  # a longer output is still checked output
    "ignore_eos": _PASS,
    "temperature": _PASS,
    "top_p": _PASS,
    "top_k": _PASS,
    "min_p": _PASS,
    "seed": _PASS,
    "presence_penalty": _PASS,
    "frequency_penalty": _PASS,
    "repetition_penalty": _PASS,
    "length_penalty": _PASS,
    "logit_bias": _PASS,  # token ids only; gateway.limits lets operator bans win
    "allowed_token_ids": _PASS,  # gateway.limits removes tokens the operator banned
    "user": _PASS,  # an end-user id; vLLM ignores it
    "priority": _PASS,
    "cache_salt": _PASS,  # isolates prefix-cache timing between tenants: worth keeping
    "session_id": _PASS,
    "stream_interval": _PASS,
    "watermarking": _PASS,
    "truncate_prompt_tokens": _PASS,  # shortens the screened prompt, never adds to it
    "truncation_side": _PASS,
    "add_special_tokens": _PASS,
    "skip_special_tokens": _PASS,  # special tokens then show in the checked text
    "spaces_between_special_tokens": _PASS,
    "include_stop_str_in_output": _PASS,
    "thinking_token_budget": _PASS,
    # Output channels outside the checked text: not asked upstream while output policies
    # run (gateway.limits.OUTPUT_CHANNELS).
    "logprobs": _PASS,
    "prompt_logprobs": _PASS,
    "logprob_token_ids": _PASS,
    "return_token_ids": _PASS,
    "return_tokens_as_token_ids": _PASS,
    # The prompt comes back as output: gateway.request_text screens it as steering text.
    "echo": _PASS,
    "stop": _STEER,
    "bad_words": _STEER,
    "response_format": _STEER,
    "structured_outputs": _STEER,
    # Guided decoding as vLLM before structured_outputs spelled it.
    "guided_json": _STEER,
    "guided_regex": _STEER,
    "guided_choice": _STEER,
    "guided_grammar": _STEER,
    "guided_decoding_backend": _STEER,
    "guided_whitespace_pattern": _STEER,
}

CHAT_FIELDS: dict[str, Treat] = {
    **COMMON_FIELDS,
    "messages": Treat.MESSAGES,
    "max_completion_tokens": _PASS,
    "top_logprobs": _PASS,
    "add_generation_prompt": _PASS,
    "continue_final_message": _PASS,  # the prefilled message is screened with the others
    "include_reasoning": _PASS,
    "reasoning_effort": _PASS,
    "parallel_tool_calls": _PASS,
    # Tool definitions are rendered into the prompt and constrain the output (refused
    # outright while output policies run: gateway.limits.refuse_tools).
    "tools": _STEER,
    "tool_choice": _STEER,
    "functions": _STEER,
    "function_call": _STEER,
    "documents": Treat.DOCUMENTS,
}

COMPLETION_FIELDS: dict[str, Treat] = {
    **COMMON_FIELDS,
    "prompt": Treat.COMPLETION_PROMPT,
    "suffix": Treat.PROMPT,
    "best_of": _PASS,
}

#: Message keys while policies are active (`content`, `tool_calls` and `function_call` are
#: walked by gateway.request_text). `tools` and `task` on a message, `audio` and unknown keys
#: are refused: chat templates render them unscreened.
MESSAGE_FIELDS: dict[str, Treat] = {
    "role": _PASS,
    "content": Treat.PROMPT,
    "name": Treat.PROMPT,
    "tool_call_id": Treat.PROMPT,
    "tool_calls": Treat.PROMPT,
    "function_call": Treat.PROMPT,
    "reasoning": Treat.PROMPT,
    "reasoning_content": Treat.PROMPT,
    "refusal": Treat.PROMPT,
}

#: Text content part types and the key holding their text; every other part type (images,
#: audio, video, files, embeddings, tool references) is refused while policies are active.
TEXT_PART_KEYS: dict[str, str] = {
    "text": "text",
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
    "thinking": "thinking",
}
#: Keys of a text part besides `type` and its text (vLLM hands other keys to the template).
TEXT_PART_FLAGS = frozenset({"closed"})
