"""The row schemas tunewise reads, one parser each, and what every field of a row is used for.

Schemas (the public dataset formats of TRL and LLaMA-Factory are the reference):

- ``input_target``: the config's ``task.input_field`` / ``task.target_field``;
- ``prompt_completion``: ``prompt`` / ``completion``;
- ``alpaca``: ``instruction``, ``input``, ``output``, optional ``system`` and ``history``
  (``[[user, assistant], ...]``); with a system or history the row becomes real chat turns;
- ``chat``: OpenAI ``messages`` (system, multi-turn, ``tool_calls``, ``tool`` results, text
  content parts), optional top-level ``tools``;
- ``sharegpt``: ``conversations`` of ``{"from", "value"}`` turns (human / gpt / system /
  function_call / observation; every tag configurable with ``data.sharegpt``), optional
  ``system`` and ``tools``;
- ``preference``: ``chosen`` / ``rejected`` beside a ``prompt`` (flat strings or message lists),
  beside ShareGPT ``conversations``, beside alpaca ``instruction``, or as whole conversations;
- ``kto`` (unpaired preference): ``prompt`` / ``completion`` or ``messages``, and a boolean
  ``label``; rows labelled false are undesirable answers and are never trained as good ones;
- ``text``: a plain-text corpus, one ``text`` field per row.

Every non-``input_target`` schema that holds turns is normalised to OpenAI messages in
``meta["messages"]`` (rendered by the model's own chat template) and tool definitions to
``meta["tools"]`` (passed to the template's ``tools`` argument).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tunewise.core import canonical_json, chat_text

SCHEMAS = ("input_target", "prompt_completion", "alpaca", "chat", "sharegpt", "preference", "kto", "text")
CHAT_ROLES = ("system", "user", "assistant", "tool")
TURN_SCHEMAS = ("chat", "sharegpt", "kto")
"""Schemas whose rows are always turns (``meta["messages"]``); alpaca with system/history, message-form
preference and conversational prompt/completion rows are turns row by row."""
SHAREGPT_TAGS = {"messages": "conversations", "role_tag": "from", "content_tag": "value", "user_tag": "human",
                 "assistant_tag": "gpt", "system_tag": "system", "function_tag": "function_call",
                 "observation_tag": "observation"}
"""LLaMA-Factory's ShareGPT defaults; ``data.sharegpt`` overrides any of them."""
MULTIMODAL_FIELDS = ("images", "videos", "audios", "image", "video", "audio")
MULTIMODAL_PARTS = ("image_url", "image", "input_audio", "audio", "video", "video_url")
PLACEHOLDERS = ("<image>", "<video>", "<audio>")
CORPUS_META = ("id", "url", "title", "timestamp", "source", "meta", "metadata")
"""Fields a plain-text corpus row may carry beside ``text`` (c4, the pile)."""


class RowError(ValueError):
    """One row is malformed; the message is the reason written to rejects.jsonl."""


# ---------------------------------------------------------------- detection

def detect_schema(rows: list[Any], input_field: str, target_field: str, tags: dict | None = None) -> str:
    """The schema most of the first rows match; ``input_target`` when none does."""
    conv = {**SHAREGPT_TAGS, **(tags or {})}["messages"]
    votes: Counter[str] = Counter()
    for row in rows:
        if isinstance(row, dict):
            votes[_row_schema(row, input_field, target_field, conv)] += 1
    return votes.most_common(1)[0][0] if votes else "input_target"


def _row_schema(row: dict, input_field: str, target_field: str, conv: str) -> str:
    keys = row.keys()
    if isinstance(row.get("label"), bool) and ("messages" in keys or {"prompt", "completion"} <= keys):
        return "kto"
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys:
        return "chat"
    if conv in keys and isinstance(row[conv], list):
        return "sharegpt"
    if {"instruction", "output"} <= keys and input_field in ("input", "instruction"):
        return "alpaca"  # with input_field "instruction", the alpaca `input` column must not be lost
    if input_field in keys and (target_field in keys or input_field != "input"):
        return "input_target"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if "text" in keys and not (keys - {"text", *CORPUS_META}):
        return "text"  # any other field (a label, say) means the config names the wrong fields
    return "input_target"


# ---------------------------------------------------------------- fields

def text_field(row: dict, name: str, required: bool = True, allow_number: bool = False) -> str | None:
    if name not in row or row[name] is None:
        if required:
            raise RowError(f"missing field '{name}'")
        return None
    value = row[name]
    # Numeric labels and answers (0/1, 3.5) are common; they are compared and trained as text.
    if allow_number and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value


def target_field(row: dict, name: str) -> str | None:
    """A missing or null target is kept (the audit counts it), a wrong type is a reject; a JSON
    object or array (extraction fields) becomes its canonical JSON text."""
    if isinstance(row.get(name), dict | list):
        return canonical_json(row[name])
    value = text_field(row, name, required=False, allow_number=True)
    return None if value is None or not value.strip() else value


def tools_field(row: dict) -> list[dict] | None:
    """Tool definitions (a list, or a JSON string of one), each in OpenAI form
    ``{"type": "function", "function": {...}}``; a bare ``{"name", "parameters"}`` is wrapped."""
    value = row.get("tools")
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RowError(f"field 'tools' must be a JSON list of tool definitions: {e.msg} (column {e.colno})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError(f"field 'tools' must be a list of tool definitions, got {type(value).__name__}")
    out = []
    for j, tool in enumerate(value):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RowError(f"tools[{j}] must be an object with a 'name' (or function.name)")
        out.append({"type": "function", "function": fn})
    return out


# ---------------------------------------------------------------- OpenAI messages

def _content(value: Any, where: str) -> str:
    """A message's text: a string, or content parts of type text (``text``, or LLaMA-Factory's
    ``value``), joined as they are."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise RowError(f"{where} must be a string or a list of text parts, got {type(value).__name__}")
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            shown = repr(kind) if kind is not None else type(part).__name__
            raise RowError(f"{where}[{j}].type must be 'text' (only text parts are supported), got {shown}")
        text = part.get("text", part.get("value"))
        if not isinstance(text, str):
            raise RowError(f"{where}[{j}].text must be a string")
        texts.append(text)
    return "".join(texts)


def _tool_calls(value: Any, where: str) -> list[dict]:
    """OpenAI tool calls, kept as given: each needs function.name and function.arguments."""
    if not isinstance(value, list) or not value:
        raise RowError(f"{where} must be a non-empty list")
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(f"{where}[{j}].function.name must be a non-empty string")
        if not isinstance(fn.get("arguments", {}), str | dict):
            raise RowError(f"{where}[{j}].function.arguments must be a JSON string or an object")
    return value


def _message(msg: Any, i: int) -> dict:
    """One checked message: role, content (text), and tool_calls / tool_call_id / name / weight if given."""
    if not isinstance(msg, dict):
        raise RowError(f"messages[{i}] must be an object with role and content")
    role, content = msg.get("role"), msg.get("content")
    if role not in CHAT_ROLES:
        raise RowError(f"messages[{i}].role must be one of {', '.join(CHAT_ROLES)}, got {role!r}")
    clean: dict[str, Any] = {"role": role}
    if role == "assistant" and msg.get("tool_calls") is not None:
        clean["tool_calls"] = _tool_calls(msg["tool_calls"], f"messages[{i}].tool_calls")
        content = "" if content is None else content  # OpenAI writes content: null beside tool calls
    clean["content"] = _content(content, f"messages[{i}].content") if content is not None else None
    if clean["content"] is None:
        raise RowError(f"messages[{i}].content must be a string, got null")
    if role == "tool":
        clean.update({k: msg[k] for k in ("tool_call_id", "name") if isinstance(msg.get(k), str)})
    if "weight" in msg:
        if msg["weight"] not in (0, 1) or isinstance(msg["weight"], bool):
            raise RowError(f"messages[{i}].weight must be 0 or 1")
        clean["weight"] = msg["weight"]
    return clean


def check_messages(messages: Any) -> list[dict]:
    """Check and normalise OpenAI messages that need not end with an answer (a request to serve):
    the same rules and the same normal form as a chat row's; a ValueError names the field."""
    if not isinstance(messages, list) or not messages:
        raise RowError("field 'messages' must be a non-empty list")
    clean = [_message(msg, i) for i, msg in enumerate(messages)]
    for i, m in enumerate(clean):
        if m["role"] == "system" and i != 0:
            raise RowError(f"messages[{i}]: a system message may only come first")
    return clean


def transcript(messages: list[dict]) -> str:
    """A chat's turns as "role: text" lines: the text form encoders, dedup and retrieval see (the model
    sees the real turns through its template)."""
    return "\n".join(f"{m['role']}: {chat_text(m)}" for m in messages)


def chat_row(messages: Any, field: str = "messages") -> tuple[str, str | None, list[dict]]:
    """Check the OpenAI fine-tuning rules; input is the transcript, target the last assistant turn."""
    if messages is None:
        raise RowError(f"missing field '{field}'")
    if not isinstance(messages, list) or not messages:
        raise RowError(f"field '{field}' must be a non-empty list")
    clean = check_messages(messages)
    roles = [m["role"] for m in clean]
    if "assistant" not in roles:
        raise RowError("chat has no assistant turn")
    first = next((r for r in roles if r != "system"), None)
    if first != "user":
        raise RowError("the first non-system message must be from the user")
    if roles[-1] != "assistant":
        raise RowError(f"messages[{len(roles) - 1}]: a chat must end with an assistant turn "
                       "(the answer to learn and to score)")
    target = chat_text(clean[-1])
    return transcript(clean[:-1]), (target if target.strip() else None), clean


# ---------------------------------------------------------------- ShareGPT

def sharegpt_messages(turns: Any, tags: dict, where: str) -> list[dict]:
    """ShareGPT turns as OpenAI messages: function_call turns become assistant tool calls (their
    value is a JSON call, or a list of calls), observation turns become tool results."""
    if not isinstance(turns, list) or not turns:
        raise RowError(f"field '{where}' must be a non-empty list")
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system",
             tags["function_tag"]: "function", tags["observation_tag"]: "tool"}
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(f"{where}[{i}] must be an object with '{tags['role_tag']}' and '{tags['content_tag']}'")
        tag, value = turn.get(tags["role_tag"]), turn.get(tags["content_tag"])
        if tag not in roles:
            raise RowError(f"{where}[{i}].{tags['role_tag']} must be one of {', '.join(roles)}, got {tag!r}")
        if not isinstance(value, str):
            raise RowError(f"{where}[{i}].{tags['content_tag']} must be a string")
        if roles[tag] == "function":
            out.append({"role": "assistant", "content": None, "tool_calls": _calls(value, f"{where}[{i}]")})
        else:
            out.append({"role": roles[tag], "content": value})
    return out


def _calls(value: str, where: str) -> list[dict]:
    try:
        calls = json.loads(value)
    except json.JSONDecodeError as e:
        raise RowError(f"{where}: a function call must be JSON with name and arguments: {e.msg}") from None
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise RowError(f"{where}: a function call must be JSON with name and arguments")
        args = call.get("arguments", {})
        out.append({"type": "function", "function": {"name": call["name"], "arguments": args}})
    return out


# ---------------------------------------------------------------- rows

def parse_row(row: dict, schema: str, input_field: str, target_name: str,
              tags: dict | None = None) -> tuple[str, str | None, dict]:
    """Turn one row object into (input, target, extra meta) or raise RowError."""
    tags = {**SHAREGPT_TAGS, **(tags or {})}
    if schema == "preference":
        return _preference(row, tags)
    if schema == "kto":
        return _kto(row)
    messages = _turns(row, schema, tags)
    if messages is not None:
        text, target, clean = chat_row(messages, tags["messages"] if schema == "sharegpt" else "messages")
        tools = tools_field(row)
        return text, target, {"messages": clean, **({"tools": tools} if tools else {})}
    if schema == "alpaca":
        return _alpaca_text(row), target_field(row, "output"), {}
    if schema == "prompt_completion":
        return text_field(row, "prompt") or "", target_field(row, "completion"), {}
    if schema == "text":
        return text_field(row, "text") or "", None, {}
    return text_field(row, input_field) or "", target_field(row, target_name), {}


def _turns(row: dict, schema: str, tags: dict) -> list | None:
    """The row as OpenAI messages when its schema holds turns (alpaca only with system or history)."""
    if schema == "chat":
        return row.get("messages")
    if schema == "sharegpt":
        system = text_field(row, "system", required=False)
        turns = sharegpt_messages(row.get(tags["messages"]), tags, tags["messages"])
        return ([{"role": "system", "content": system}] if system else []) + turns
    if schema == "alpaca" and (row.get("system") or row.get("history")):
        return _alpaca_messages(row)
    if schema == "prompt_completion" and isinstance(row.get("prompt"), list):
        # TRL's conversational prompt-completion: message lists on both sides
        return [*row["prompt"], _answer(row.get("completion"), "completion", tags)]
    return None


def _alpaca_text(row: dict) -> str:
    instruction, extra = text_field(row, "instruction"), text_field(row, "input", required=False) or ""
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction or ""


def _alpaca_messages(row: dict) -> list[dict]:
    system, history = text_field(row, "system", required=False), row.get("history") or []
    out = [{"role": "system", "content": system}] if system else []
    if not isinstance(history, list):
        raise RowError("field 'history' must be a list of [instruction, answer] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RowError(f"history[{i}] must be a pair [instruction, answer] of strings")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    output = target_field(row, "output")
    return [*out, {"role": "user", "content": _alpaca_text(row)}, {"role": "assistant", "content": output or ""}]


def _answer(value: Any, name: str, tags: dict) -> dict:
    """A chosen / rejected answer as one assistant message: a string, a message, a one-message list,
    or a ShareGPT turn."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, dict) and tags["role_tag"] in value:
        return sharegpt_messages([value], tags, name)[0]
    if isinstance(value, dict):
        return _message(value, 0)
    raise RowError(f"field '{name}' must be a string, a message or a list of one message, got {type(value).__name__}")


def _preference(row: dict, tags: dict) -> tuple[str, str | None, dict]:
    """Paired preference in any of its forms; the prompt becomes turns, chosen the answer to learn,
    rejected the text DPO pushes down (``meta["rejected"]``)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise RowError(f"missing field '{'chosen' if chosen is None else 'rejected'}'")
    if isinstance(row.get("prompt"), str) and isinstance(rejected, str) and not (row.get("system") or row.get("tools")):
        # flat strings stay a plain row: prompt is the input, chosen the target
        return text_field(row, "prompt") or "", target_field(row, "chosen"), {"rejected": rejected}
    if tags["messages"] in row:
        prompt = sharegpt_messages(row[tags["messages"]], tags, tags["messages"])
    elif isinstance(row.get("prompt"), list):
        prompt = row["prompt"]
    elif "prompt" in row or "instruction" in row:
        prompt = [{"role": "user", "content": text_field(row, "prompt") if "prompt" in row else _alpaca_text(row)}]
    elif isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) > 1:
        # implicit prompt (TRL): both conversations share every turn but the last
        prompt, chosen, rejected = chosen[:-1], chosen[-1], rejected[-1]
    else:
        raise RowError("missing field 'prompt' (or conversations / instruction) beside chosen and rejected")
    system = text_field(row, "system", required=False)
    if system and not (prompt and isinstance(prompt[0], dict) and prompt[0].get("role") == "system"):
        prompt = [{"role": "system", "content": system}, *prompt]
    good, bad = _answer(chosen, "chosen", tags), _answer(rejected, "rejected", tags)
    text, target, clean = chat_row([*prompt, good])
    if target is None:
        raise RowError("field 'chosen' is empty")
    if chat_text(bad) == target:
        raise RowError("chosen and rejected are the same answer")
    tools = tools_field(row)
    return text, target, {"messages": clean, "rejected": chat_text(bad), **({"tools": tools} if tools else {})}


def _kto(row: dict) -> tuple[str, str | None, dict]:
    """Unpaired preference: one answer and whether it is desirable (``meta["desirable"]``)."""
    if not isinstance(row.get("label"), bool):
        raise RowError("field 'label' must be true or false (is the answer desirable?)")
    if "messages" in row:
        text, target, clean = chat_row(row["messages"])
    else:
        prompt = row.get("prompt")
        turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": text_field(row, "prompt")}]
        text, target, clean = chat_row([*turns, _answer(row.get("completion"), "completion", SHAREGPT_TAGS)])
    return text, target, {"messages": clean, "desirable": row["label"]}


# ---------------------------------------------------------------- what each field is for

def field_uses(schema: str, input_field: str, target_name: str, tags: dict | None = None) -> dict[str, str]:
    """Each field the schema reads, and what for: the audit lists every other field as ignored."""
    conv = {**SHAREGPT_TAGS, **(tags or {})}["messages"]
    common = {"tools": "tool definitions (the chat template's tools)", "system": "system prompt"}
    uses = {
        "input_target": {input_field: "input", target_name: "target"},
        "prompt_completion": {"prompt": "input", "completion": "target", **common},
        "alpaca": {"instruction": "input", "input": "input (after the instruction)", "output": "target",
                   "history": "earlier turns", "system": "system prompt"},
        "chat": {"messages": "turns (input, and the last assistant turn as target)", **common},
        "sharegpt": {conv: "turns (input, and the last gpt turn as target)", **common},
        "preference": {"prompt": "input", conv: "input turns", "instruction": "input", "input": "input",
                       "chosen": "target (preferred answer)", "rejected": "rejected answer (DPO)", **common},
        "kto": {"messages": "turns (input and answer)", "prompt": "input", "completion": "answer",
                "label": "desirable (true) or undesirable (false) answer"},
        "text": {"text": "text (no target)"},
    }
    return uses[schema]


TURN_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name", "weight")


def ignored_turn_fields(objects: list[dict], schema: str, tags: dict | None = None) -> dict[str, int]:
    """Keys inside the turns that no schema reads (``messages[].loss_weight``, ``thinking``), and in
    how many rows: a turn is normalised to its known keys, so these would otherwise vanish unseen."""
    tags = {**SHAREGPT_TAGS, **(tags or {})}
    field = {"chat": "messages", "kto": "messages", "sharegpt": tags["messages"]}.get(schema)
    if field is None:
        return {}
    known = TURN_KEYS if field == "messages" else (tags["role_tag"], tags["content_tag"])
    found: Counter[str] = Counter()
    for row in objects:
        turns = row.get(field)
        if isinstance(turns, list):
            found.update({f"{field}[].{k}" for t in turns if isinstance(t, dict) for k in t if k not in known})
    return dict(found)


def multimodal_rows(objects: list[dict], tags: dict | None = None) -> dict[str, int]:
    """How many rows hold images, video or audio, by the field (or placeholder) that shows it."""
    found: Counter[str] = Counter()
    for row in objects:
        for name in MULTIMODAL_FIELDS:
            if row.get(name):
                found[name] += 1
        if any(row.get(n) for n in MULTIMODAL_FIELDS):
            continue
        texts, kinds = _strings(row)
        for mark in PLACEHOLDERS:
            if any(mark in t for t in texts):
                found[f"{mark} placeholder"] += 1
        if kinds & set(MULTIMODAL_PARTS):
            found["image, audio or video content parts"] += 1
    return dict(found)


def _strings(value: Any) -> tuple[list[str], set[str]]:
    """Every string value inside a row, and every content-part ``type`` it names."""
    texts, kinds, stack = [], set(), [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, dict):
            if isinstance(v.get("type"), str):
                kinds.add(v["type"])
            stack += v.values()
        elif isinstance(v, list):
            stack += v
    return texts, kinds
