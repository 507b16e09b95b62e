"""One evaluation contract for every backend: a run folder on this machine or an OpenAI-compatible
server.

Strategies ask a language model for one thing: continue these texts until a stop string, greedily
or by sampling ``n`` continuations each (lm-evaluation-harness calls it ``generate_until``). A
chat model (``chat=True``: an SFT, PPO or DPO run, or a server's chat endpoint) takes each text
as the user's message instead and answers it as the assistant.
:class:`LocalLM` answers from a GPT run folder in batches; :class:`OpenAILM` sends the same
request to ``/v1/completions`` of any OpenAI-compatible server (``genlab serve`` or another)
through the ``openai`` client. :func:`open_lm` picks one from a path or a URL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import torch

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import generate


class LM(Protocol):
    """Continue texts until a stop string: ``n`` continuations per prompt, prompt by prompt."""

    def generate_until(
        self,
        prompts: Sequence[str],
        stop: Sequence[str],
        max_tokens: int,
        temperature: float = 0.0,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[str]]: ...


class LocalLM:
    """A GPT run folder (pretraining, SFT, PPO or DPO) answering in batches of ``batch_size``.

    A prompt longer than the context loses its oldest tokens (the first demonstrations), never
    the question at its end. With ``chat`` each prompt is a user's message in the chat template.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        device: str = "auto",
        batch_size: int = 64,
        chat: bool = False,
    ) -> None:
        self.model, self.tokenizer = load_gpt(folder, device=pick_device(device))
        self.batch_size, self.chat = batch_size, chat

    def encode(self, prompt: str, max_tokens: int) -> list[int]:
        room = self.model.config.block_size - max_tokens
        if room < 8:
            raise GenlabError(
                f"max_tokens={max_tokens} leaves no room for a prompt in a context of "
                f"{self.model.config.block_size} tokens: ask for fewer"
            )
        if self.chat:
            return self.tokenizer.render_prompt([{"role": "user", "content": prompt}])[-room:]
        return [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)][-room:]

    @torch.inference_mode()
    def generate_until(
        self,
        prompts: Sequence[str],
        stop: Sequence[str],
        max_tokens: int,
        temperature: float = 0.0,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[str]]:
        ids = [self.encode(p, max_tokens) for p in prompts]
        out: list[list[str]] = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            gens = generate(
                self.model,
                chunk,
                max_new_tokens=max_tokens,
                temperature=temperature,
                stop=[*self.tokenizer.stop_ids, *stop],
                seed=seed + start,
                tokenizer=self.tokenizer,
                num_samples=n,
            )
            out.extend([g.text or "" for g in gens[i * n : (i + 1) * n]] for i in range(len(chunk)))
        return out


class OpenAILM:
    """Any OpenAI-compatible server's ``/v1/completions``, through the ``openai`` client.

    ``model`` defaults to the first the server lists; ``chat`` sends each prompt as a user's
    message to ``/v1/chat/completions`` (one request per prompt). A request asks for at most ``max_n``
    samples of each prompt and ``batch_size`` sequences in all (prompts times samples; genlab
    serve refuses more than it decodes together, 16 by default); more samples are asked for in
    several requests with different seeds.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        batch_size: int = 16,
        max_n: int = 16,
        timeout: float = 600.0,
        chat: bool = False,
    ) -> None:
        try:
            import openai  # an optional dependency: only this backend needs it
        except ImportError:
            raise GenlabError(
                "evaluating a server needs the openai client: pip install 'genlab[eval]'"
            ) from None

        url = base_url.rstrip("/")
        self.client = openai.OpenAI(
            base_url=url if url.endswith("/v1") else f"{url}/v1",
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "genlab",
            timeout=timeout,
            max_retries=2,
        )
        try:
            self.model = model or self.client.models.list().data[0].id
        except openai.APIError as err:
            raise GenlabError(f"cannot list the models of {base_url}: {err}") from None
        self.batch_size, self.max_n, self.chat = batch_size, max_n, chat

    def generate_until(
        self,
        prompts: Sequence[str],
        stop: Sequence[str],
        max_tokens: int,
        temperature: float = 0.0,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[str]]:
        import openai

        out: list[list[str]] = [[] for _ in prompts]
        per_prompt = min(self.max_n, n)
        step = 1 if self.chat else max(1, self.batch_size // per_prompt)
        for start in range(0, len(prompts), step):
            chunk = list(prompts[start : start + step])
            for done in range(0, n, per_prompt):
                k = min(per_prompt, n - done)
                asked = {
                    "model": self.model,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "n": k,
                    "stop": list(stop)[:4] or None,
                    "seed": seed + start + done,
                }
                try:
                    if self.chat:
                        message = {"role": "user", "content": chunk[0]}
                        reply = self.client.chat.completions.create(messages=[message], **asked)
                        texts = [(c.index, c.message.content or "") for c in reply.choices]
                    else:
                        reply = self.client.completions.create(prompt=chunk, **asked)
                        texts = [(c.index, c.text) for c in reply.choices]
                except openai.APIError as err:
                    raise GenlabError(f"the server refused a completion request: {err}") from None
                for index, text in sorted(texts):
                    out[start + index // k].append(text)
        return out


def open_lm(target: str, device: str = "auto", model: str | None = None, chat: bool = False) -> LM:
    """A run folder, or an ``http(s)://`` URL of an OpenAI-compatible server."""
    if target.startswith(("http://", "https://")):
        return OpenAILM(target, model=model, chat=chat)
    return LocalLM(target, device=device, chat=chat)
