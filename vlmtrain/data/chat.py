"""Rendering a conversation with a chat template, as training and inference both must see it.

Why one place: the collator (what the model learns), the prompt at inference (`vlmtrain.data.prompting`) and
the template check in `vlmtrain validate` must agree on every character. Two repairs happen here, for
every family, because real checkpoints' templates need them:

- BOS: a tokenizer with a BOS token whose template does not write it (the hub LLaVA-1.5 and
  LLaVA-NeXT templates) gets it prepended; the processor is always called with
  `add_special_tokens=False`, so nothing else would add it, and the model was pretrained with it.
- Stop: every answer must end with a token that stops generation. When the template ends an answer
  with a special token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `</s>` ...), the supervised span
  ends right after it (the newline after it is not supervised); when it ends with none (LLaVA-1.5
  writes `A ` and the next `USER:`), the tokenizer's EOS is written after the answer, as the original
  LLaVA training code did. A model trained otherwise never learns to stop.

A template that writes visible text after the answer (LLaVA-1.6-mistral's literal `<\\s> `) or renders
earlier turns differently from the whole conversation (the hub LLaVA-OneVision generation prompt,
Qwen3.5's thinking template in multi-turn) cannot be supervised exactly: `TemplateError` says so,
and `template_problem` finds it at validation time (`model.chat_template` is the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmdata.schema import assistant_texts

TEMPLATES = Path(__file__).parent / "chat_templates"


def shipped_templates() -> list[str]:
    """Names of the chat templates shipped in vlmtrain/chat_templates/ (`model.chat_template: NAME`)."""
    return sorted(p.stem for p in TEMPLATES.glob("*.jinja"))


def shipped_template(name: str) -> str:
    """The text of a shipped template; ValueError lists the names."""
    path = TEMPLATES / f"{name}.jinja"
    if not path.is_file():
        raise ValueError(f"no shipped chat template '{name}' (shipped: {', '.join(shipped_templates())})")
    return path.read_text(encoding="utf-8")


class TemplateError(ValueError):
    """The chat template cannot be used to supervise exactly the answers; `reason` says why (no fix)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}; set model.chat_template to a shipped template or a file "
                         "(`vlmtrain validate` names the family's)")


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def special_tokens(processor: Any) -> list[str]:
    """Every special token string of the processor's tokenizer, longest first (for suffix search)."""
    tok = _tokenizer(processor)
    found = set(tok.all_special_tokens)
    for added in getattr(tok, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            found.add(str(added))
    return sorted((t for t in found if t), key=len, reverse=True)


def render(processor: Any, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    """The template's text for `messages`, with BOS prepended when the template does not write it."""
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    bos = _tokenizer(processor).bos_token
    pad = _tokenizer(processor).pad_token
    if bos and bos != pad and not text.startswith(bos):
        text = bos + text
    return text


def _stop_end(text: str, *, start: int, end: int, specials: list[str]) -> int | None:
    """The position right after the last special token in text[start:end] when only whitespace follows it."""
    best = None
    for token in specials:
        at = text.rfind(token, start, end)
        if at >= 0 and (best is None or at + len(token) > best):
            best = at + len(token)
    if best is not None and text[best:end].strip() == "":
        return best
    return None


def conversation(*, processor: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant answer.

    A span covers what follows the generation prompt up to and including the end-of-turn token (or the
    EOS written in its place, see the module docstring). Raises TemplateError when the template does
    not render prefixes consistently or writes text after the answer.
    """
    full = render(processor, messages, add_generation_prompt=False)
    eos = _tokenizer(processor).eos_token
    specials = special_tokens(processor)
    answers = iter(assistant_texts(messages))
    spans: list[tuple[int, int]] = []
    inserted: list[int] = []  # positions in `full` (before insertion) where EOS goes
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        answer = next(answers)
        if i == 0:
            raise ValueError("a conversation must not start with an assistant turn (nothing to answer)")
        before = render(processor, messages[:i], add_generation_prompt=True)
        through = render(processor, messages[: i + 1], add_generation_prompt=False)
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise TemplateError(
                f"the chat template does not render turn {i} as a prefix of the whole conversation "
                "(its generation prompt or an earlier answer renders differently); cannot tell which tokens "
                "are the assistant's answer"
            )
        start, end = len(before), len(through)
        answer = answer.strip()  # templates may trim the content
        # the first occurrence: an answer such as "end" also occurs inside "<|im_end|>" after it
        at = full.find(answer, start, end) if answer else start
        found = at >= 0  # else the template rewrote the answer: the tail cannot be checked
        tail_from = at + len(answer) if found else start
        stop = _stop_end(full, start=tail_from, end=end, specials=specials)
        if stop is not None:
            leftover = full[tail_from:stop]
            for token in specials:
                leftover = leftover.replace(token, "")
            if found and leftover.strip():
                raise TemplateError(f"the chat template writes the text '{leftover.strip()}' after the answer")
            spans.append((start, stop))
        else:
            if found and full[tail_from:end].strip():
                raise TemplateError(f"the chat template writes the text '{full[tail_from:end].strip()}' after "
                                    "the answer and no end-of-turn token")
            if not eos:
                raise TemplateError("the chat template ends answers with no special token and the tokenizer "
                                    "has no EOS token: nothing would teach the model to stop")
            cut = tail_from if found else len(full[:end].rstrip())
            spans.append((start, cut))
            inserted.append(cut)
    return _insert_eos(full=full, spans=spans, inserted=inserted, eos=eos)


def _insert_eos(*, full: str, spans: list[tuple[int, int]], inserted: list[int],
                eos: str) -> tuple[str, list[tuple[int, int]]]:
    """`full` with EOS written at each position in `inserted` (answers the template ends with no special
    token), and the answer spans shifted to match."""
    if not inserted:
        return full, spans
    pieces, shifted, previous = [], [], 0
    for position in inserted:
        pieces += [full[previous:position], eos]
        previous = position
    pieces.append(full[previous:])
    for start, end in spans:
        moved = sum(len(eos) for p in inserted if p < start)
        grown = len(eos) if end in inserted else 0
        shifted.append((start + moved, end + moved + grown))
    return "".join(pieces), shifted


def prompt(*, processor: Any, messages: list[dict[str, Any]]) -> str:
    """The inference prompt: exactly the text that preceded an answer to `messages` in training.

    Built by rendering `messages` plus a placeholder answer through `conversation` and keeping what comes
    before that answer's span, so earlier answers carry the same EOS repair and the prompt ends with the
    same generation prompt (an empty think block included) as training saw.
    """
    try:
        text, spans = conversation(processor=processor, messages=[*messages, _PROBE_ANSWER])
    except TemplateError:
        return render(processor, messages, add_generation_prompt=True)
    return text[: spans[-1][0]]


_PROBE_ANSWER = {"role": "assistant", "content": [{"type": "text", "text": "probe"}]}
_PROBE = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A square."}]},
    {"role": "user", "content": [{"type": "text", "text": "Which colour?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
]


def template_problem(processor: Any) -> str | None:
    """Why the processor's chat template cannot supervise exactly the answers (None when it can).

    Renders a probe conversation (system, image, two turns) through `conversation`; a template without
    a system role is probed without the system turn.
    """
    if getattr(processor, "chat_template", None) is None and getattr(_tokenizer(processor), "chat_template", None) is None:
        return "the processor has no chat template; set model.chat_template"
    for messages in (_PROBE, _PROBE[1:]):
        try:
            conversation(processor=processor, messages=messages)
            return None
        except TemplateError as err:
            problem = err.reason
        except Exception as err:  # noqa: BLE001 - a template may raise anything (e.g. "system role not supported")
            problem = f"the chat template fails on a probe conversation: {err}"
    return problem
