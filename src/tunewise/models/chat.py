"""One prompt format for training, evaluation and serving: the model's own chat template.

A prompt is the task instruction and the (optionally truncated) input as the user's turn, rendered
with ``add_generation_prompt=True``. The answer is the target followed by the template's
end-of-turn token, which is trained and scored, so the model learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunewise.config import TaskConfig


class TemplateError(ValueError):
    """The tokenizer's chat template cannot render our prompts consistently."""


@dataclass
class PromptBuilder:
    task: TaskConfig
    tokenizer: object

    def truncate(self, text: str) -> str:
        limit = self.task.max_input_tokens
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
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                self.messages(text, shots), tokenize=False, add_generation_prompt=True
            )
        return self.user_message(text, shots) + "\n"

    @property
    def end_of_answer(self) -> str:
        """The text that closes an assistant turn (the template's EOS)."""
        return self.tokenizer.eos_token or ""

    def answer(self, target: str) -> str:
        return target + self.end_of_answer

    def encode(self, text: str, target: str | None) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the answer (target + EOS), tokenized separately.

        Tokenizing the two halves separately gives the same boundary in training and scoring.
        """
        prompt_ids = self.tokenizer(self.prompt(text), add_special_tokens=False)["input_ids"]
        answer_ids = (
            self.tokenizer(self.answer(target), add_special_tokens=False)["input_ids"]
            if target is not None
            else []
        )
        return prompt_ids, answer_ids

    def check_template(self, probe_input: str = "ping", probe_target: str = "pong") -> None:
        """Fail loudly when the template drops a turn or the EOS does not close the answer."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return
        prompt = self.prompt(probe_input)
        full = tok.apply_chat_template(
            self.messages(probe_input) + [{"role": "assistant", "content": probe_target}],
            tokenize=False,
        )
        if not full.startswith(prompt):
            raise TemplateError(
                "the chat template renders the prompt differently with and without the answer; "
                "training and evaluation would see different text"
            )
        rest = full[len(prompt):]
        if not rest.startswith(self.answer(probe_target)):
            raise TemplateError(
                f"the chat template closes the answer with {rest[len(probe_target):][:20]!r}, not "
                f"the tokenizer's EOS {self.end_of_answer!r}: the model would never learn to stop"
            )
        if probe_input not in prompt:
            raise TemplateError("the chat template drops the user's turn")
