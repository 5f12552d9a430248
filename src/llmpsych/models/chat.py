"""Chat templates: rendering conversations the way a model expects, and making its persona explicit."""

from __future__ import annotations

import json
from pathlib import Path

from .engine import Message

# A plain template for base models that have no chat template (replaceable per engine).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


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


def with_explicit_system(messages: tuple[Message, ...], default: str | None) -> tuple[Message, ...]:
    """Prepend the model's default system prompt when a conversation has none (renders identically)."""
    if default and (not messages or messages[0]["role"] != "system"):
        return ({"role": "system", "content": default},) + tuple(messages)
    return tuple(messages)
