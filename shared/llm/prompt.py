"""Prompt rendering: a request's chat messages (and tools, for a template that renders
them) through the model's chat template (from the GGUF, ChatML when it has none) into the
tokens the engine evaluates; a raw prompt is tokenized as it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.llm.base import GenerationRequest

FALLBACK_TEMPLATE = (  # ChatML, for a GGUF without a chat template
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class PromptRenderer:
    """Renders chat messages with the model's template and tokenizes the result."""

    def __init__(self, lc: Any, model: Any, metadata: dict[str, str]) -> None:
        self._model = model
        eos, bos = model.token_eos(), model.token_bos()
        self.template = metadata.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        self._formatter = lc.llama_chat_format.Jinja2ChatFormatter(
            template=self.template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    def tokens(self, req: GenerationRequest) -> list[int]:
        """The prompt tokens of ``req`` (template applied, generation prompt added; a raw
        prompt as it is, with the model's BOS if it wants one, special tokens parsed as
        llama-server does)."""
        if req.prompt is not None:
            return self._model.tokenize(req.prompt.encode("utf-8"), add_bos=True, special=True)
        r = self._formatter(messages=req.messages, tools=req.tools or None)
        return self._model.tokenize(r.prompt.encode("utf-8"), add_bos=not r.added_special, special=True)
