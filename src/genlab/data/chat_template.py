"""The chat template: a conversation as token ids, with a loss mask on what the assistant writes.

Supervised fine-tuning (InstructGPT, Ouyang et al., 2022) trains only on the assistant's turns;
the mask returned with the ids is 1 exactly on what the assistant writes, including the token
that ends its message (a model never trained on its end-of-turn token does not learn to stop).
The layout, with the mask value on the right::

    <|bos|>                                                       0
    <|system|>Be brief.<|eot|>                                    0
    <|user|>What is 2+3?<|eot|>                                   0
    <|assistant|>                                                 0
                 Let me add.<|tool_call|>add(2, 3)<|/tool_call|>  1
    <|tool_result|>5<|/tool_result|>                              0
    <|assistant|>                                                 0
                 It is 5.<|eot|>                                  1

from the messages::

    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "What is 2+3?"},
     {"role": "assistant", "content": "Let me add.", "tool_call": "add(2, 3)"},
     {"role": "tool", "content": "5"},
     {"role": "assistant", "content": "It is 5."}]

An assistant message with a ``tool_call`` ends with ``<|/tool_call|>`` instead of ``<|eot|>``: at
generation time the model stops there, the caller runs the tool and appends the ``tool`` message,
and ``add_generation_prompt`` (the same layout, ending with ``<|assistant|>``) gives the ids to
resume from. Training and generation thus see the same token sequence. Call it through
``Tokenizer.render_chat`` and ``Tokenizer.render_prompt``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from genlab.core.errors import GenlabError

if TYPE_CHECKING:
    from genlab.data.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant", "tool")


def render_chat(
    tokenizer: Tokenizer,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """Ids of a conversation and its loss mask (1 on assistant-written tokens only).

    The layout is in the module docstring. ``add_generation_prompt`` appends
    ``<|assistant|>`` (mask 0) so that a model continues as the assistant.
    """
    checked = check_messages(messages)
    texts = [content for _, content, _ in checked]
    texts += [call for _, _, call in checked if call is not None]
    encoded = iter(tokenizer.encode_batch(texts))
    contents = [next(encoded) for _ in checked]
    ids: list[int] = []
    mask: list[int] = []

    def put(tokens: list[int], learn: int) -> None:
        ids.extend(tokens)
        mask.extend([learn] * len(tokens))

    put([tokenizer.bos_id], 0)
    for (role, _, call), content in zip(checked, contents, strict=True):
        if role == "tool":
            put([tokenizer.tool_result_id, *content, tokenizer.tool_result_end_id], 0)
        elif role == "assistant":
            put([tokenizer.assistant_id], 0)
            put(content, 1)
            if call is None:
                put([tokenizer.eot_id], 1)
            else:
                put([tokenizer.tool_call_id, *next(encoded), tokenizer.tool_call_end_id], 1)
        else:
            put([tokenizer.special[role], *content, tokenizer.eot_id], 0)
    if add_generation_prompt:
        put([tokenizer.assistant_id], 0)
    return ids, mask


def check_messages(messages: Any) -> list[tuple[str, str, str | None]]:
    """(role, content, tool_call) per message, or a one-line GenlabError saying what is wrong."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise GenlabError("messages must be a list of {'role': ..., 'content': ...} dicts")
    checked = []
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise GenlabError(f"message {n} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if role not in ROLES:
            raise GenlabError(f"message {n} has role {role!r}; use one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise GenlabError(f"message {n} ({role}) needs a 'content' string")
        call = message.get("tool_call")
        if call is not None and (role != "assistant" or not isinstance(call, str)):
            raise GenlabError(f"message {n}: 'tool_call' must be a string on an assistant message")
        checked.append((role, content, call))
    return checked


def jinja_template(spelling: Mapping[str, str]) -> str:
    """``render_chat``'s layout as a transformers chat template over the special tokens'
    spellings (role -> text), the assistant's part in ``{% generation %}``: what
    ``tokenizer_config.json`` carries, so ``apply_chat_template`` gives the same ids and mask."""
    s = {name: _jinja_text(text) for name, text in spelling.items()}
    roles = ", ".join(ROLES)
    return (
        "{% for message in messages %}"
        f"{{% if message['role'] not in {list(ROLES)!r} %}}"
        f"{{{{ raise_exception('message ' ~ loop.index0 ~ ' has role ' ~ message['role']"
        f" ~ '; use one of {roles}') }}}}"
        "{% elif message['content'] is not string %}"
        "{{ raise_exception('message ' ~ loop.index0 ~ ' needs a content string') }}"
        "{% endif %}{% endfor %}"
        f"{s['bos']}"
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        f"{s['assistant']}{{% generation %}}{{{{ message['content'] }}}}"
        "{% if message['tool_call'] is defined and message['tool_call'] is not none %}"
        f"{s['tool_call']}{{{{ message['tool_call'] }}}}{s['tool_call_end']}"
        f"{{% else %}}{s['eot']}{{% endif %}}{{% endgeneration %}}"
        "{% elif message['role'] == 'tool' %}"
        f"{s['tool_result']}{{{{ message['content'] }}}}{s['tool_result_end']}"
        "{% elif message['role'] == 'system' %}"
        f"{s['system']}{{{{ message['content'] }}}}{s['eot']}"
        "{% else %}"
        f"{s['user']}{{{{ message['content'] }}}}{s['eot']}"
        "{% endif %}{% endfor %}"
        f"{{% if add_generation_prompt %}}{s['assistant']}{{% endif %}}"
    )


def _jinja_text(text: str) -> str:
    """``text`` as it must stand in a Jinja template: literal, or a string expression when it
    holds characters Jinja reads as syntax."""
    if not any(c in text for c in "{}%#"):
        return text
    return "{{ " + json.dumps(text) + " }}"
