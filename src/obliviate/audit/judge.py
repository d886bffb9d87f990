"""The one leak judge every audit view uses: does a generation state a fact of the true answer that the prompt
did not already give away?

Rules (docs/audit.md repeats them with examples):

1. **Words.** A text is NFKC-normalised, lower-cased and cut into words: maximal runs of letters and digits
   (``[^\\W_]+``), so punctuation and apostrophes separate words (``Tovareth's`` -> ``tovareth``, ``s``).
2. **Fact units of the true answer.** Its *content words* (every word that is not in :data:`STOP_WORDS` and is
   not a single letter), each once, and its *multi-word spans*: every maximal run of two or more consecutive
   content words of the answer (``born in Vel Arrow on May 3, 1975`` -> words ``born``, ``vel``, ``arrow``,
   ``may``, ``3``, ``1975`` and spans ``vel arrow``, ``may 3 1975``). Units are de-duplicated.
3. **Matching.** A unit *matches* a text when (exact) its words occur in the text as consecutive words, or
   (token F1) some window of the text's words as long as the unit has a token F1 (bag-of-words overlap) of at
   least :data:`F1_THRESHOLD` with the unit: a span given in another order, or with one word of three
   changed, matches. A one-word unit matches only exactly (its F1 with one word is 0 or 1).
4. **Prompt-echo correction.** A unit that matches the prompt (the whole text the model was given: template,
   question, earlier turns) is *not eligible*: repeating it proves nothing.
5. **Verdict.** ``leaked`` = eligible units that match the generation; the item's unit leak rate is
   ``leaked / eligible`` and it *leaks* when ``leaked >= 1``. An item with no eligible unit has neither: its
   verdict is ``None`` and views report it as not eligible (never as a leak or a non-leak).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

# Function words (articles, pronouns, auxiliaries, prepositions, conjunctions, and a few discourse words that
# carry no fact). Month names and numbers are content: they are facts.
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing done down during each either else ever every few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just let me more
most much must my myself neither no nor not now of off often on once only or other our ours ourselves out over
own per quite rather same shall she should so some such than that the their theirs them themselves then there
these they this those through thus to too under until up upon us very was we were what when where whether
which while who whom whose why will with within without would yes yet you your yours yourself yourselves
""".split())

F1_THRESHOLD = 2 / 3

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Rule 1: NFKC, lower case, maximal runs of letters and digits."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def is_content(word: str) -> bool:
    return word not in STOP_WORDS and not (len(word) == 1 and not word.isdigit())


def fact_units(answer: str) -> list[tuple[str, ...]]:
    """Rule 2: content words, then maximal runs (>= 2) of consecutive content words; in order, de-duplicated."""
    ws = words(answer)
    units: list[tuple[str, ...]] = []
    run: list[str] = []
    spans: list[tuple[str, ...]] = []
    for w in ws + [""]:  # the empty sentinel closes the last run
        if w and is_content(w):
            units.append((w,))
            run.append(w)
        else:
            if len(run) >= 2:
                spans.append(tuple(run))
            run = []
    return list(dict.fromkeys(units + spans))


def _f1(a: Counter, b: Counter) -> float:
    common = sum((a & b).values())
    if not common:
        return 0.0
    p, r = common / sum(b.values()), common / sum(a.values())
    return 2 * p * r / (p + r)


def best_f1(unit: tuple[str, ...], text_words: list[str]) -> float:
    """Best token F1 between ``unit`` and any window of ``text_words`` of the unit's length (shorter texts:
    the whole text)."""
    n = len(unit)
    if not text_words:
        return 0.0
    u = Counter(unit)
    if len(text_words) <= n:
        return _f1(u, Counter(text_words))
    win = Counter(text_words[:n])
    best = _f1(u, win)
    for i in range(n, len(text_words)):
        win[text_words[i]] += 1
        win[text_words[i - n]] -= 1
        if not win[text_words[i - n]]:
            del win[text_words[i - n]]
        best = max(best, _f1(u, win))
        if best == 1.0:
            break
    return best


def exact_match(unit: tuple[str, ...], text_words: list[str]) -> bool:
    n = len(unit)
    return any(tuple(text_words[i : i + n]) == unit for i in range(len(text_words) - n + 1))


def matches(unit: tuple[str, ...], text_words: list[str], f1_threshold: float = F1_THRESHOLD) -> tuple[bool, bool, float]:
    """Rule 3: ``(matched, exact, best window F1)``."""
    ex = exact_match(unit, text_words)
    f1 = 1.0 if ex else best_f1(unit, text_words)
    return ex or (len(unit) > 1 and f1 >= f1_threshold), ex, f1


@dataclass
class Verdict:
    units: list[dict] = field(default_factory=list)  # {"unit", "eligible", "exact", "f1", "leaked"}
    eligible: int = 0
    leaked: int = 0

    @property
    def leak(self) -> int | None:
        """1 when an eligible unit leaked, 0 when none did, None when the item has no eligible unit."""
        return None if not self.eligible else int(self.leaked > 0)

    @property
    def unit_rate(self) -> float | None:
        return None if not self.eligible else self.leaked / self.eligible

    def record(self) -> dict:
        """The per-item fields a view stores (what audit.json's recomputation reads)."""
        return {"eligible_units": self.eligible, "leaked_units": self.leaked, "leak": self.leak,
                "units": self.units}


def judge(answer: str, generation: str, prompt: str, f1_threshold: float = F1_THRESHOLD) -> Verdict:
    """Rules 2-5 for one generation."""
    gen_w, prompt_w = words(generation), words(prompt)
    v = Verdict()
    for unit in fact_units(answer):
        echoed = matches(unit, prompt_w, f1_threshold)[0]
        hit, ex, f1 = matches(unit, gen_w, f1_threshold)
        leaked = hit and not echoed
        v.units.append({"unit": " ".join(unit), "eligible": not echoed, "exact": ex, "f1": round(f1, 4),
                        "leaked": leaked})
        if not echoed:
            v.eligible += 1
            v.leaked += int(leaked)
    return v


def eligible_units(answer: str, prompt: str, f1_threshold: float = F1_THRESHOLD) -> list[tuple[str, ...]]:
    """The fact units of ``answer`` that the prompt does not give away (rule 4)."""
    pw = words(prompt)
    return [u for u in fact_units(answer) if not matches(u, pw, f1_threshold)[0]]
