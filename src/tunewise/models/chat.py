"""One prompt format for training, evaluation and serving: the model's own chat template.

Plain rows (input/target): the task instruction and the (optionally truncated) input are the
user's turn, rendered with ``add_generation_prompt=True``; the answer is the target followed by
the template's end of turn.

Chat rows (``meta["messages"]``, OpenAI format) are rendered as real turns. The task instruction
joins the system message (or becomes one when the chat has none); each user and tool message is
truncated to ``task.max_input_tokens``. The prompt is every message before the final assistant
turn; that turn is the answer scored in evaluation. Training takes the loss on every assistant
turn (except those with OpenAI's ``weight: 0``), each conditioned on exactly the tokens it would
see at inference: turn k's context is the token ids of ``messages[:k]`` rendered with a
generation prompt, and every later rendering must extend those ids, or we fail loudly. This works
with any template; transformers' ``return_assistant_tokens_mask`` needs ``{% generation %}``
markers that most templates (SmolLM2's among them) lack.

The end of turn is the special token the template writes right after an assistant's text
(``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for Gemma), found by
rendering a probe. It closes every trained answer and stops generation; it need not be the EOS.

Tool definitions (``meta["tools"]``) go to the template's ``tools`` argument; a template that never
mentions ``tools`` would drop them silently, so they join the system turn as JSON lines instead.

Tool calls: a template that mentions ``tool_calls`` gets them as they are (JSON-text arguments
parsed into an object, as transformers' templates expect). Otherwise an assistant tool-call turn
is rendered as its text followed by ``{"tool_calls": [{"name": ..., "arguments": ...}]}`` (see
``core.chat_text``, which is also the evaluation target), and a ``tool`` message becomes a user
turn ``Tool result (name): ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from tunewise.config import TaskConfig
from tunewise.core import Record, chat_text

IGNORE = -100
"""Label of a token outside the loss (the value transformers' losses skip)."""


class TemplateError(ValueError):
    """The tokenizer's chat template cannot render our prompts consistently."""


@dataclass
class PromptBuilder:
    task: TaskConfig
    tokenizer: object

    # ------------------------------------------------------------ plain rows

    def truncate(self, text: str, limit: int | None = None) -> str:
        limit = self.task.max_input_tokens if limit is None else limit
        if limit is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= limit:
            return text
        return self.tokenizer.decode(ids[:limit]) + " …"

    def user_message(self, text: str, shots: list[tuple[str, str]] = ()) -> str:
        parts = [self.task.instruction.strip()] if self.task.instruction.strip() else []
        for example_input, example_target in shots:
            parts.append(f"Input: {self.truncate(example_input)}\nAnswer: {example_target}")
        parts.append(f"Input: {self.truncate(text)}\nAnswer:" if shots else self.truncate(text))
        return "\n\n".join(parts)

    def messages(self, text: str, shots: list[tuple[str, str]] = ()) -> list[dict]:
        return [{"role": "user", "content": self.user_message(text, shots)}]

    def prompt(self, text: str, shots: list[tuple[str, str]] = ()) -> str:
        """The rendered prompt, ending where the assistant's answer starts."""
        if self.has_template:
            return self.render(self.messages(text, shots), generation=True)
        return self.user_message(text, shots) + "\n"

    def answer(self, target: str) -> str:
        return target + self.end_of_answer

    def encode(self, text: str, target: str | None) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the answer (target + end of turn), tokenized separately.

        Tokenizing the two halves separately gives the same boundary in training and scoring.
        """
        prompt_ids = self.ids(self.prompt(text))
        answer_ids = self.ids(self.answer(target)) if target is not None else []
        return prompt_ids, answer_ids

    # ------------------------------------------------------------ the template

    @property
    def has_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def render(self, messages: list[dict], generation: bool, tools: list[dict] | None = None) -> str:
        """The turns as the model sees them; ``tools`` (OpenAI tool definitions) go to the template's
        ``tools`` argument, or into the system turn as text when the template ignores them."""
        if tools and not self.template_takes_tools:
            messages = tools_in_system(messages, tools)
            tools = None
        if self.has_template:
            from jinja2 import TemplateError as JinjaError

            try:
                extra = {"tools": tools} if tools else {}
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                                          **extra)
            except JinjaError as e:  # e.g. a template that refuses a system turn or a tool role
                roles = ", ".join(m["role"] for m in messages)
                raise TemplateError(f"the model's chat template refuses these turns ({roles}): {e}") from None
        # No template: "role: text" lines; an assistant turn ends with the EOS.
        eos = self.tokenizer.eos_token or ""
        lines = [f"{m['role']}: {m['content']}{eos if m['role'] == 'assistant' else ''}\n" for m in messages]
        return "".join(lines) + ("assistant: " if generation else "")

    @property
    def template_takes_tools(self) -> bool:
        """Whether the chat template renders a ``tools`` argument (most tool-calling templates do;
        one that never mentions it would drop the definitions silently)."""
        return self.has_template and "tools" in self.tokenizer.chat_template

    @property
    def end_of_answer(self) -> str:
        """The text that closes an assistant turn: the end-of-turn token."""
        return self._end_of_turn[0]

    @property
    def end_of_turn_id(self) -> int | None:
        """The token that ends an answer: the generation stop and the last trained token."""
        return self._end_of_turn[1]

    @cached_property
    def _end_of_turn(self) -> tuple[str, int | None]:
        """The token the template writes right after an assistant's text, found with a probe."""
        if not self.has_template:
            return self.tokenizer.eos_token or "", self.tokenizer.eos_token_id
        probe = [{"role": "user", "content": "ping"}]
        prompt = self.render(probe, generation=True)
        full = self.render([*probe, {"role": "assistant", "content": "pong"}], generation=False)
        if not full.startswith(prompt):
            raise TemplateError(
                "the chat template renders the prompt differently with and without the answer; "
                "training and evaluation would see different text"
            )
        rest = full[len(prompt):]
        if not rest.startswith("pong"):
            raise TemplateError(f"the chat template rewrites the assistant's text (renders {rest[:30]!r} for 'pong')")
        tail = rest[len("pong"):]
        ids = self.ids(tail)
        special = set(self.tokenizer.all_special_ids) | set(getattr(self.tokenizer, "added_tokens_decoder", {}))
        if not ids or ids[0] not in special:
            raise TemplateError(
                f"the chat template closes the answer with {tail[:20]!r}, not an end-of-turn token: "
                "the model would never learn to stop"
            )
        return self.tokenizer.convert_ids_to_tokens(ids[0]), ids[0]

    @property
    def stop_ids(self) -> list[int]:
        """Tokens that end generation: the end of turn, and the EOS where it differs."""
        eos = self.tokenizer.eos_token_id
        return [t for t in dict.fromkeys([self.end_of_turn_id, eos]) if t is not None]

    def check_template(self, probe_input: str = "ping", probe_target: str = "pong") -> None:
        """Fail loudly when the template drops a turn or nothing closes the answer."""
        if not self.has_template:
            return
        prompt = self.prompt(probe_input)
        full = self.render(self.messages(probe_input) + [{"role": "assistant", "content": probe_target}], False)
        if not full.startswith(prompt):
            raise TemplateError(
                "the chat template renders the prompt differently with and without the answer; "
                "training and evaluation would see different text"
            )
        if not full[len(prompt):].startswith(self.answer(probe_target)):
            raise TemplateError(
                f"the chat template closes the answer with {full[len(prompt) + len(probe_target):][:20]!r}, "
                f"not {self.end_of_answer!r}: the model would never learn to stop"
            )
        if probe_input not in prompt:
            raise TemplateError("the chat template drops the user's turn")

    # ------------------------------------------------------------ chat rows

    def chat_messages(self, messages: list[dict], clip: int | None = None, instruction: bool = True) -> list[dict]:
        """A chat row's turns as the template receives them (see the module docstring)."""
        tools = self.has_template and "tool_calls" in self.tokenizer.chat_template
        out = []
        for m in messages:
            role, content = m["role"], m.get("content") or ""
            if role in ("user", "tool"):
                content = self.truncate(content, clip)
            if role == "assistant" and m.get("tool_calls"):
                out.append({"role": role, "content": content, "tool_calls": [_hf_call(c) for c in m["tool_calls"]]}
                           if tools else {"role": role, "content": chat_text(m)})
            elif role == "tool" and not tools:
                name = f" ({m['name']})" if m.get("name") else ""
                out.append({"role": "user", "content": f"Tool result{name}: {content}"})
            else:
                extra = {k: m[k] for k in ("tool_call_id", "name") if role == "tool" and k in m}
                out.append({"role": role, "content": content, **extra})
        text = self.task.instruction.strip()
        if instruction and text:
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{text}"}
            else:
                out.insert(0, {"role": "system", "content": text})
        return out

    def prompt_turns(self, messages: list[dict], clip: int | None = None, instruction: bool = True) -> list[dict]:
        """The turns before the final assistant turn (all of them when the chat ends elsewhere, as
        a request to serve does)."""
        turns = self.chat_messages(messages, clip, instruction)
        return turns[:-1] if turns and turns[-1]["role"] == "assistant" else turns

    def chat_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The rendered prompt of a chat (a row's turns or a request to serve) with its tool
        definitions: what training, evaluation and serving all feed the model."""
        return self.render(self.prompt_turns(messages), generation=True, tools=tools)

    def record_prompt(self, rec: Record) -> str:
        """The rendered prompt for any record: a chat row's real turns, else instruction + input."""
        messages = rec.meta.get("messages") if rec.meta else None
        if not messages:
            return self.prompt(rec.input)
        return self.chat_prompt(messages, rec.meta.get("tools"))

    def prompt_ids(self, rec: Record) -> list[int]:
        if self.task.type == "text":
            # A domain corpus: a prompt is the start of a document, continued as the model trained on it
            # (tunewise.evaluate.perplexity.document_ids, without the closing EOS), never a chat turn.
            return self.tokenizer(rec.input, add_special_tokens=False)["input_ids"]
        return self.ids(self.record_prompt(rec))

    def train_ids(self, rec: Record) -> tuple[list[int], list[int]]:
        """Token ids and labels of one training example: the loss on answer tokens only."""
        messages = rec.meta.get("messages") if rec.meta else None
        if not messages:
            prompt_ids, answer_ids = self.encode(rec.input, rec.target)
            return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids
        turns = self.chat_messages(messages)
        tools = rec.meta.get("tools")
        weights = iter([m.get("weight", 1) for m in messages if m["role"] == "assistant"])
        ids: list[int] = []
        labels: list[int] = []
        for k, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            prompt = self.render(turns[:k], generation=True, tools=tools)
            prompt_ids = self.ids(prompt)
            if prompt_ids[: len(ids)] != ids:
                raise TemplateError(
                    f"record {rec.id}: the chat template renders earlier turns differently once a later "
                    "turn follows; a multi-turn answer would be trained on a context it never sees"
                )
            answer_ids = self.ids(self._answer_text(turns[: k + 1], prompt, rec, tools))
            context = prompt_ids[len(ids):]
            trained = next(weights, 1) != 0
            ids += context + answer_ids
            labels += [IGNORE] * len(context) + (answer_ids if trained else [IGNORE] * len(answer_ids))
        return ids, labels

    def _answer_text(self, turns: list[dict], prompt: str, rec: Record, tools: list[dict] | None = None) -> str:
        """The text the template writes for the last (assistant) turn, up to its end of turn."""
        full = self.render(turns, generation=False, tools=tools)
        if not full.startswith(prompt):
            raise TemplateError(
                f"record {rec.id}: the chat template renders the prompt differently with and without "
                "the answer; training and evaluation would see different text"
            )
        rest = full[len(prompt):]
        end = rest.find(self.end_of_answer)
        if end < 0:
            raise TemplateError(f"record {rec.id}: the chat template does not close an assistant turn "
                                f"with {self.end_of_answer!r}")
        return rest[: end + len(self.end_of_answer)]


def tools_in_system(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Tool definitions as text at the end of the system turn (one is added when the chat has none),
    for a template that has no ``tools`` argument."""
    text = "Tools you can call (JSON):\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _hf_call(call: dict) -> dict:
    """An OpenAI tool call as transformers' templates expect it: arguments as an object."""
    fn = dict(call.get("function") or {})
    if isinstance(fn.get("arguments"), str):
        try:
            fn["arguments"] = json.loads(fn["arguments"])
        except json.JSONDecodeError:
            pass  # not JSON: the template shows the text as it is
    return {**call, "type": call.get("type", "function"), "function": fn}
