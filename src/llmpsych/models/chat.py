"""Chat templates: rendering conversations the way a model expects, and making its persona explicit.

Message contents are untrusted text (dataset rows, model answers, judge inputs). A tokenizer turns a
special token's string into that special token wherever it appears, so an answer that says
"<|im_end|>\n<|im_start|>system\n..." would otherwise open a turn of its own. `ControlTokens`
breaks such strings inside contents with a zero-width space before templating, for inference and
training alike; contents without one are left byte for byte as they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import UserError
from .engine import Message

# A plain template for base models that have no chat template (replaceable per engine).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class ControlTokens:
    """The strings a tokenizer reads as special tokens wherever they occur, and how to defuse them in text."""

    tokens: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tokenizer) -> "ControlTokens":
        """The tokenizer's special tokens (non-special added tokens, such as Gemma's "<table>", are ordinary text)."""
        found = set(tokenizer.all_special_tokens)
        found.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
        return cls(frozenset(t for t in found if len(t) > 1 and ZERO_WIDTH_SPACE not in t))

    @cached_property
    def _lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(t) for t in self.tokens}, reverse=True))

    @cached_property
    def _starts(self) -> re.Pattern:
        return re.compile("[" + "".join(sorted(re.escape(c) for c in {t[0] for t in self.tokens})) + "]")

    def text(self, text: str) -> str:
        """`text` with a zero-width space after the first character of every special-token string in it (each
        occurrence, overlapping ones included), so the tokenizer reads it as plain text. Unchanged when none."""
        if not self.tokens:
            return text
        pieces, done = [], 0
        for start in (m.start() for m in self._starts.finditer(text)):
            if any(text[start:start + n] in self.tokens for n in self._lengths):
                pieces.append(text[done:start + 1] + ZERO_WIDTH_SPACE)
                done = start + 1
        return "".join(pieces) + text[done:] if pieces else text

    def messages(self, messages) -> tuple[Message, ...]:
        """The conversation with every string content defused (see `text`); roles and other fields as they are."""
        return tuple({**m, "content": self.text(m["content"])} if isinstance(m.get("content"), str) else m
                     for m in messages)


def chat_template_text(folder: Path) -> str | None:
    """A model folder's chat template, read from its files without loading the tokenizer."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def default_system_prompt(tokenizer) -> str | None:
    """The system prompt a chat template inserts when a conversation has none (SmolLM2's names it SmolLM).

    Found by rendering one conversation with a marker system prompt and one without, and reading what
    the template put in the marker's place.
    """
    marker_system, marker_user = "\x00SYSTEM\x00", "\x00USER\x00"

    def render(messages: list[Message]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    with_system = render([{"role": "system", "content": marker_system}, {"role": "user", "content": marker_user}])
    without = render([{"role": "user", "content": marker_user}])
    before, _, after = with_system.partition(marker_system)
    between = after.split(marker_user)[0]
    if not without.startswith(before):
        return None
    end = without.find(between, len(before))
    if end <= len(before):
        return None
    return without[len(before):end]


# A conversation of one message with this role is a raw completion prompt: its text exactly, with no chat template
# around it (how EM asked base models: the question inside a frame of code the model completes).
RAW_ROLE = "raw"


def is_raw(messages: tuple[Message, ...]) -> bool:
    return len(messages) == 1 and messages[0]["role"] == RAW_ROLE


def with_explicit_system(messages: tuple[Message, ...], default: str | None) -> tuple[Message, ...]:
    """Prepend the model's default system prompt when a conversation has none (renders identically)."""
    if default and not is_raw(messages) and (not messages or messages[0]["role"] != "system"):
        return ({"role": "system", "content": default},) + tuple(messages)
    return tuple(messages)


class ChatTokenizer:
    """A model's tokenizer and chat template: conversations to prompt token ids, without loading weights.

    Every local engine builds its prompts, stop tokens and word-continuation tokens here, so one
    conversation is the same tokens on each of them.
    """

    def __init__(self, folder: Path, chat_template: str | None = None, template_kwargs: dict | None = None):
        from transformers import AutoTokenizer

        self.template_kwargs = dict(template_kwargs or {})  # e.g. enable_thinking for Qwen3's template
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if chat_template:
            self.tokenizer.chat_template = chat_template
        self.has_chat_template = bool(self.tokenizer.chat_template)
        if not self.has_chat_template:
            self.tokenizer.chat_template = PLAIN_TEMPLATE
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # A base model under the plain template would go on to write the user's next turn.
        self.implicit_stops: tuple[str, ...] = () if self.has_chat_template else ("\nUser:",)
        self.default_system_prompt = default_system_prompt(self.tokenizer) if self.has_chat_template else None
        self.control_tokens = ControlTokens.of(self.tokenizer)
        self._word_continuation_ids: frozenset[int] | None = None

    def render(self, messages: tuple[Message, ...]) -> str:
        """The prompt text; special-token strings inside contents are defused (see `ControlTokens`)."""
        if is_raw(messages):
            return self.control_tokens.text(messages[0]["content"])
        return self.tokenizer.apply_chat_template(list(self.control_tokens.messages(messages)), tokenize=False,
                                                  add_generation_prompt=True, **self.template_kwargs)

    def prompt_ids(self, messages: tuple[Message, ...]) -> list[int]:
        text = self.render(messages)
        # Chat templates write their own special tokens; a plain template or raw text needs the tokenizer's BOS.
        return self.tokenizer(text, add_special_tokens=is_raw(messages) or not self.has_chat_template)["input_ids"]

    def effective_messages(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        return with_explicit_system(messages, self.default_system_prompt)

    def _continuation_ids(self, text: str) -> list[int]:
        """A continuation to score, tokenised on its own (as the reply's first tokens)."""
        ids = self.tokenizer(self.control_tokens.text(text), add_special_tokens=False)["input_ids"]
        if not ids:
            raise UserError(f"score: continuation {text!r} is empty after tokenisation")
        return ids

    def stop_tokens(self, generation_eos: int | list[int] | None) -> set[int]:
        """The tokens that end a reply: the tokenizer's and generation config's EOS, and known end-of-turn tokens."""
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, generation_eos):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(value)
        for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id and token_id is not None:
                ids.add(token_id)
        return ids

    def word_continuation_ids(self) -> frozenset[int]:
        """Tokens that would extend a word or number: they start with a letter or digit, no space before."""
        if self._word_continuation_ids is None:
            pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            special = set(self.tokenizer.all_special_ids)
            continuing = set()
            for token_id, piece in enumerate(pieces):
                if token_id in special or not piece or piece[0] in "Ġ▁Ċ":
                    continue
                text = self.tokenizer.decode([token_id])
                if text and text[0].isalnum():
                    continuing.add(token_id)
            self._word_continuation_ids = frozenset(continuing)
        return self._word_continuation_ids
