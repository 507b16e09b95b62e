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

OpenAI's function calling fits the same layout. An assistant message may carry ``tool_calls``
(``[{"type": "function", "function": {"name": ..., "arguments": ...}}]``, its ``content`` then
possibly None) instead of a ``tool_call`` string: each call is written as one JSON object,
``<|tool_call|>{"name": "add", "arguments": {"a": 2, "b": 3}}<|/tool_call|>`` (``tool_call_text``;
arguments given as a JSON string are written verbatim, so a model reads back exactly the call it
wrote). ``tools`` (OpenAI's ``[{"type": "function", "function": {name, description,
parameters}}]``) become a system turn in front of the conversation, one function's JSON a line
(``tools_text``), so the model knows what it may call. A conversation without either renders as
it always did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from genlab.core.errors import GenlabError

if TYPE_CHECKING:
    from genlab.data.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant", "tool")
TOOLS_HEADER = "You can call these tools; a call is one JSON object {name, arguments}."
CALL_OPEN = '{"name": '  # a call's text: CALL_OPEN name CALL_ARGUMENTS arguments CALL_CLOSE
CALL_ARGUMENTS = ', "arguments": '
CALL_CLOSE = "}"


def render_chat(
    tokenizer: Tokenizer,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = False,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[list[int], list[int]]:
    """Ids of a conversation and its loss mask (1 on assistant-written tokens only).

    The layout is in the module docstring. ``add_generation_prompt`` appends
    ``<|assistant|>`` (mask 0) so that a model continues as the assistant; ``tools`` (OpenAI
    function tools) are listed in a system turn first.
    """
    checked = check_messages(messages)
    texts = [content for _, content, _ in checked]
    texts += [call for _, _, calls in checked for call in calls]
    if tools:
        texts.append(tools_text(tools))
    encoded = tokenizer.encode_batch(texts)
    contents, calls = iter(encoded[: len(checked)]), iter(encoded[len(checked) :])
    ids: list[int] = []
    mask: list[int] = []

    def put(tokens: list[int], learn: int) -> None:
        ids.extend(tokens)
        mask.extend([learn] * len(tokens))

    put([tokenizer.bos_id], 0)
    if tools:
        put([tokenizer.system_id, *encoded[-1], tokenizer.eot_id], 0)
    for role, _, message_calls in checked:
        content = next(contents)
        if role == "tool":
            put([tokenizer.tool_result_id, *content, tokenizer.tool_result_end_id], 0)
        elif role == "assistant":
            put([tokenizer.assistant_id], 0)
            put(content, 1)
            for _ in message_calls:
                put([tokenizer.tool_call_id, *next(calls), tokenizer.tool_call_end_id], 1)
            if not message_calls:
                put([tokenizer.eot_id], 1)
        else:
            put([tokenizer.special[role], *content, tokenizer.eot_id], 0)
    if add_generation_prompt:
        put([tokenizer.assistant_id], 0)
    return ids, mask


def tool_call_text(name: str, arguments: str | Mapping[str, Any]) -> str:
    """A call as the assistant writes it: ``{"name": "add", "arguments": {"a": 2}}``
    (``arguments`` a JSON string, written as it is, or a mapping, dumped)."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return (
        CALL_OPEN + json.dumps(name, ensure_ascii=False) + CALL_ARGUMENTS + arguments + CALL_CLOSE
    )


def tools_text(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system turn that lists ``tools``: a header, then each function's JSON on a line."""
    lines = [TOOLS_HEADER]
    for n, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise GenlabError(
                f"tool {n} must be {{'type': 'function', 'function': {{'name': ...}}}}"
            )
        lines.append(json.dumps(function, ensure_ascii=False))
    return "\n".join(lines)


def check_messages(messages: Any) -> list[tuple[str, str, list[str]]]:
    """(role, content, the texts of its tool calls) per message, or a one-line GenlabError
    saying what is wrong."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise GenlabError("messages must be a list of {'role': ..., 'content': ...} dicts")
    checked = []
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise GenlabError(f"message {n} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if role not in ROLES:
            raise GenlabError(f"message {n} has role {role!r}; use one of {', '.join(ROLES)}")
        calls = _calls(n, message)
        content = message.get("content")
        if content is None and calls:
            content = ""
        if not isinstance(content, str):
            raise GenlabError(f"message {n} ({role}) needs a 'content' string")
        checked.append((role, content, calls))
    return checked


def _calls(n: int, message: Mapping[str, Any]) -> list[str]:
    """The texts of message ``n``'s tool calls: its ``tool_call`` string or its OpenAI
    ``tool_calls`` (only an assistant calls, and one message does not hold both)."""
    call, calls = message.get("tool_call"), message.get("tool_calls")
    if call is None and not calls:
        return []
    if message.get("role") != "assistant":
        raise GenlabError(f"message {n}: only an assistant message has a tool_call or tool_calls")
    if call is not None:
        if not isinstance(call, str) or calls:
            raise GenlabError(f"message {n}: 'tool_call' must be a string, without 'tool_calls'")
        return [call]
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)):
        raise GenlabError(f"message {n}: 'tool_calls' must be a list of calls")
    texts = []
    for k, item in enumerate(calls):
        function = item.get("function") if isinstance(item, Mapping) else None
        if not (
            isinstance(function, Mapping)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), (str, Mapping))
        ):
            raise GenlabError(
                f"message {n}: tool call {k} must be {{'function': {{'name': ..., "
                "'arguments': ...}}}}"
            )
        texts.append(tool_call_text(function["name"], function["arguments"]))
    return texts


def jinja_template(spelling: Mapping[str, str]) -> str:
    """``render_chat``'s layout as a transformers chat template over the special tokens'
    spellings (role -> text), the assistant's part in ``{% generation %}``: what
    ``tokenizer_config.json`` carries, so ``apply_chat_template`` (with ``tools=`` too) gives
    the same ids and mask."""
    s = {name: _jinja_text(text) for name, text in spelling.items()}
    roles = ", ".join(ROLES)
    call_open, call_arguments = _jinja_text(CALL_OPEN), _jinja_text(CALL_ARGUMENTS)
    has_calls = "message['tool_calls'] is defined and message['tool_calls']"
    has_call = "message['tool_call'] is defined and message['tool_call'] is not none"
    arguments = "call['function']['arguments']"
    return (
        "{% for message in messages %}"
        f"{{% set calls = ({has_calls}) or ({has_call}) %}}"
        f"{{% if message['role'] not in {list(ROLES)!r} %}}"
        f"{{{{ raise_exception('message ' ~ loop.index0 ~ ' has role ' ~ message['role']"
        f" ~ '; use one of {roles}') }}}}"
        "{% elif calls and message['role'] != 'assistant' %}"
        "{{ raise_exception('message ' ~ loop.index0 ~ ': only an assistant message has a "
        "tool_call or tool_calls') }}"
        # transformers drops None values: content may be absent as well as None
        "{% elif message['content'] is not string"
        " and not (calls and (message['content'] is not defined or message['content'] is none)) %}"
        "{{ raise_exception('message ' ~ loop.index0 ~ ' needs a content string') }}"
        "{% endif %}{% endfor %}"
        f"{s['bos']}"
        f"{{% if tools %}}{s['system']}{_jinja_text(TOOLS_HEADER)}"
        "{% for tool in tools %}{{ '\\n' }}{{ tool['function'] | tojson }}{% endfor %}"
        f"{s['eot']}{{% endif %}}"
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        f"{s['assistant']}{{% generation %}}"
        "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
        f"{{% if {has_calls} %}}{{% for call in message['tool_calls'] %}}"
        f"{s['tool_call']}{call_open}{{{{ call['function']['name'] | tojson }}}}{call_arguments}"
        f"{{% if {arguments} is string %}}{{{{ {arguments} }}}}"
        f"{{% else %}}{{{{ {arguments} | tojson }}}}{{% endif %}}"
        f"{_jinja_text(CALL_CLOSE)}{s['tool_call_end']}{{% endfor %}}"
        f"{{% elif {has_call} %}}"
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
