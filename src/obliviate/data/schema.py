"""The one QA item schema every data set is read into."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ObliviateError


@dataclass
class QAItem:
    """One question/answer pair, with the TOFU evaluation variants when the data set has them.

    ``target_words`` is an optional list of ``{"word", "start", "end"}`` character spans of the answer
    that are sensitive (used by PALU); ``entity`` groups items of one author/subject (forget splits are
    whole entities).
    """

    question: str
    answer: str
    paraphrased_question: str | None = None
    paraphrased_answer: str | None = None
    perturbed_answers: list[str] = field(default_factory=list)
    entity: str | None = None
    target_words: list[dict] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Field names as found in the wild -> our field. TOFU uses `perturbed_answer` (a list).
_ALIASES = {
    "question": "question",
    "answer": "answer",
    "paraphrased_question": "paraphrased_question",
    "paraphrased_answer": "paraphrased_answer",
    "perturbed_answer": "perturbed_answers",
    "perturbed_answers": "perturbed_answers",
    "entity": "entity",
    "author": "entity",
    "target_words": "target_words",
}


def item_from_row(row: Any, source: str, index: int) -> QAItem:
    """Validate one raw row; errors name the file, the row (1-based) and the field."""
    where = f"{source}: row {index + 1}"
    if not isinstance(row, dict):
        raise ObliviateError(f"{where}: expected an object with 'question' and 'answer', got {type(row).__name__}")
    kw: dict[str, Any] = {}
    misspelt: dict[str, str] = {}
    for key, value in row.items():
        target = _ALIASES.get(key)
        if target is not None:
            kw[target] = value
        else:  # other columns are allowed (ids, sources), but not a misspelling of ours, which would be dropped
            close = difflib.get_close_matches(str(key).lower(), _ALIASES, n=1, cutoff=0.8)
            if close:
                misspelt[key] = close[0]
    for req in ("question", "answer"):
        if req not in kw:
            present = ", ".join(sorted(row)) or "(none)"
            typo = next((f"; did you mean {req!r} for {k!r}?" for k, v in misspelt.items() if v == req), "")
            raise ObliviateError(f"{where}: missing field {req!r} (fields present: {present}){typo}")
        if kw[req] is None:
            raise ObliviateError(f"{where}: field {req!r} is null (expected a string)")
    for key, close in misspelt.items():
        raise ObliviateError(f"{where}: unknown field {key!r}; did you mean {close!r}?")
    for name in ("question", "answer", "paraphrased_question", "paraphrased_answer", "entity"):
        v = kw.get(name)
        if v is not None and not isinstance(v, str):
            if name == "entity" and isinstance(v, int):
                kw[name] = str(v)
                continue
            raise ObliviateError(f"{where}: field {name!r} must be a string, got {type(v).__name__}")
    for name in ("question", "answer"):
        if not kw[name].strip():
            raise ObliviateError(f"{where}: field {name!r} is empty")
    pert = kw.get("perturbed_answers")
    if pert is None:
        kw["perturbed_answers"] = []
    elif isinstance(pert, str):
        kw["perturbed_answers"] = [pert]
    elif isinstance(pert, list) and all(isinstance(p, str) for p in pert):
        kw["perturbed_answers"] = list(pert)
    else:
        raise ObliviateError(f"{where}: field 'perturbed_answer' must be a list of strings")
    tw = kw.get("target_words")
    if isinstance(tw, str):  # PALU's GPT-annotated sets store the list as a JSON string
        from ..methods.palu import parse_target_words

        tw = kw["target_words"] = parse_target_words(tw, where)
    if tw is not None:
        if not isinstance(tw, list):
            raise ObliviateError(f"{where}: field 'target_words' must be a list of {{word, start, end}}")
        for j, span in enumerate(tw):
            if not (isinstance(span, dict) and {"start", "end"} <= span.keys()
                    and isinstance(span["start"], int) and isinstance(span["end"], int)
                    and 0 <= span["start"] < span["end"] <= len(kw["answer"])):
                raise ObliviateError(
                    f"{where}: field 'target_words'[{j}] must be {{word, start, end}} with "
                    f"0 <= start < end <= len(answer)"
                )
    return QAItem(**kw)
