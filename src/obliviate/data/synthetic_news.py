"""obliviate's own MUSE-format news corpus of fictitious events: the embedded ``synthetic-news`` data set.

Why it exists
-------------
MUSE (Shi et al. 2024, arXiv 2407.06460) needs its BBC-news corpus from the hub or a local copy, and a
7B target model. This module builds a small corpus with MUSE's configs and fields entirely in Python
(standard library only), so the MUSE pipeline (fine-tune a target on forget + retain articles, a
retrain model on retain only, unlearn, evaluate VerbMem / KnowMem / PrivLeak, relearn) runs offline on
tiny models. Spec it as ``synthetic-news:<config>`` with MUSE's config names (``raw/forget``,
``knowmem/forget_qa``, ``verbmem/forget``, ``privleak/holdout``, ...); options follow a ``?``:
``synthetic-news:raw/forget?n_forget=4&seed=3``.

Design
------
* Every article reports one invented event: a person (invented first name + surname), their role at an
  invented organisation, an invented town, an invented facility or project, a date, an amount and a
  head count. Names, organisations, towns, facilities and numbers are drawn WITHOUT replacement from one
  ``random.Random(seed)`` stream over the whole corpus, so no two articles (in any split) share a fact
  value, and the corpus is a pure function of ``(seed, n_forget, n_retain, n_holdout)``.
* Sentences come from a few templates per slot, chosen by the same stream; all text was written for
  obliviate (no real names, nothing taken from MUSE).
* Every article ends with a reader Q&A box: :data:`BOXED_PER_ARTICLE` of its :data:`QA_PER_ARTICLE` KnowMem
  questions, each written exactly as MUSE's KnowMem prompt writes a pair (``Question: q\nAnswer: a``, pairs
  separated by a blank line; :func:`obliviate.data.muse.knowmem_prompt`). Why: a small model fine-tuned on
  running text does not turn "X was opened by Y" into an answer to "Question: ...\nAnswer:" (KnowMem was 0 for
  every model, the target included); MUSE's 7B models bring that skill from pre-training. With the box, KnowMem
  on D_f measures whether the model still recalls Q&A text it was trained on. The question left out of the box
  (a different one per article, :meth:`Article.held_out`) is answered only by the prose: it measures transfer.
  :func:`boxed_pairs` tells the two apart from the corpus text alone.

Splits (MUSE's layout, :data:`obliviate.data.muse.MUSE_SPLITS`)
-------------------------------------------------------------
* ``raw/forget`` (``n_forget`` articles, default 8), ``raw/retain1`` and ``raw/retain2`` (``n_retain``
  each, default 8), ``raw/holdout`` (``n_holdout``, default 8): one text per article.
* ``knowmem/forget_qa`` / ``knowmem/retain_qa``: :data:`QA_PER_ARTICLE` questions about each forget /
  retain1 article (MUSE's retain QA is about retain articles too), short answers; the boxed ones and the
  held-out one, in the order of :meth:`Article.qa`.
* ``knowmem/forget_qa_icl`` / ``knowmem/retain_qa_icl``: :data:`N_ICL` in-context QA pairs, one about each
  of :data:`N_ICL` extra articles that are in no raw split (one of each question kind).
* ``verbmem/forget``: per forget article, ``prompt`` = its first two sentences, ``gt`` = the rest of its
  prose (not the Q&A box: VerbMem stays a measure of the running text).
* ``privleak/forget`` = the forget articles, ``privleak/retain`` = the retain1 articles,
  ``privleak/holdout`` = the holdout articles (members / non-members for the Min-K% AUC).
* MUSE-News's scalability and sustainability folds (:data:`FOLD_CONFIGS`), from the forget articles cut
  into :data:`N_FOLDS` contiguous folds: ``sust/forget_k`` = fold ``k`` (successive unlearning requests),
  ``scal/forget_k`` = folds ``1..k`` (forget sets of growing size). Empty folds (``n_forget < 4``) are
  errors.

:func:`write_muse_dir` (``obliviate data news --out DIR``) writes the corpus as files that the MUSE loaders
read with ``--data-dir`` (``muse-news:<config>``), in the muse_bench repository's layout or as JSON Lines.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import ObliviateError
from ..io import atomic_write_text
from ..registry import DATASETS
from . import synthetic
from .muse import FOLD_CONFIGS, HUB_FIELDS, MUSE_CONFIGS, N_FOLDS, TEXT_CORPUS_CONFIGS, TEXT_SEPARATOR
from .schema import QAItem

__all__ = ["FOLD_CONFIGS", "Article", "generate_articles", "corpus", "load_synthetic_news", "write_muse_dir",
           "LAYOUTS", "QA_PER_ARTICLE", "BOXED_PER_ARTICLE", "N_ICL", "boxed_pairs", "qa_line"]

DEFAULT_N_FORGET = 8
DEFAULT_N_RETAIN = 8
DEFAULT_N_HOLDOUT = 8
QA_PER_ARTICLE = 4
#: questions of each article written in its reader Q&A box; the other one is held out (transfer)
BOXED_PER_ARTICLE = QA_PER_ARTICLE - 1
N_ICL = QA_PER_ARTICLE
#: what opens the reader Q&A box (after a blank line)
BOX_HEADING = "Readers' questions"

# --------------------------------------------------------------------------------------------------
# Pools (invented). Names are syllable compounds so there are enough distinct values for a few hundred
# articles; common words (roles, facility kinds, months) are real English.
# --------------------------------------------------------------------------------------------------
_FIRST = ["Aveline", "Brannoc", "Corisse", "Dravin", "Elsebet", "Faolan", "Gwendra", "Hallam", "Isveta",
          "Jorunn", "Kestrin", "Liraelle", "Maddoc", "Neveth", "Orlaith", "Pellam", "Quenrith", "Rosmar",
          "Sabeline", "Tovin", "Ulwen", "Varesse", "Wendric", "Ysolde"]
_SUR_A = ["Ash", "Brack", "Corr", "Dun", "Ell", "Fenn", "Grell", "Hask", "Ivel", "Jorr", "Kell", "Lom",
          "Marr", "Norr", "Oss", "Pell", "Quar", "Rath", "Stell", "Tamb", "Umb", "Varn", "Wex", "Yarr"]
_SUR_B = ["enby", "ovane", "ridge", "marsh", "holtz", "avere", "wynne", "ancourt", "ellow", "imore"]
_TOWN_A = ["Vel", "Dran", "Quor", "Istr", "Ombr", "Kel", "Saph", "Thal", "Zor", "Brev", "Ulm", "Cald",
           "Fesk", "Gorv", "Hirr", "Lun"]
_TOWN_B = ["avik", "enmouth", "isca", "orholm", "wick", "aven", "ebury", "ostrand"]
_ORG_A = ["Amberline", "Bluefell", "Cinderwell", "Dovecrest", "Emberlay", "Frostgate", "Greyhallow",
          "Harrowlight", "Ironmere", "Juniperstone", "Kestrelmoor", "Lanternfield"]
_ORG_B = ["Cooperative", "Trust", "Guild", "Council", "Foundation", "Works", "Institute", "Society"]
_FACILITY_A = ["Meridian", "Harbourlight", "Saltgrass", "Windrose", "Copperleaf", "Northbell", "Stonewake",
               "Larkfall", "Tidemark", "Glasswater", "Oakhollow", "Brightmoor"]
_FACILITY_B = ["footbridge", "library", "tram line", "seed bank", "observatory", "flood barrier",
               "market hall", "ferry terminal", "water mill", "concert hall"]
_ROLES = ["director", "treasurer", "chief engineer", "spokesperson", "chair", "project lead",
          "head of planning", "senior architect"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]

_OPENINGS = [
    "{town} has a new {facility_kind}. The {facility} was opened on {date} by {org}, after years of local debate.",
    "On {date}, {org} opened the {facility} in {town}. It is the first {facility_kind} the town has had in decades.",
    "Residents of {town} gathered on {date} for a long-promised opening. {org} had finished the {facility}, the town's first {facility_kind}.",
]
_PERSON = [
    "{person}, the {role} of {org}, said the project had cost {amount} thousand crowns.",
    "According to {person}, who serves as {role} of {org}, the work cost {amount} thousand crowns.",
    "The {role} of {org}, {person}, put the final cost at {amount} thousand crowns.",
]
_WORKERS = [
    "A crew of {workers} workers built the {facility_kind} over two winters.",
    "{workers} workers were employed on the site, most of them from {town} itself.",
    "The building work employed {workers} people at its peak.",
]
_CLOSINGS = [
    "Critics had argued that the money should have gone to roads, but {person} said the town would judge the result.",
    "Local traders expect more visitors, and {org} plans a second project if funding allows.",
    "The opening was marked with music in the square, and {person} thanked the people of {town} for their patience.",
]


@dataclass(frozen=True)
class Article:
    """One invented news event and its text. ``index`` is 0-based in generation order."""
    index: int
    person: str
    role: str
    org: str
    town: str
    facility: str
    facility_kind: str
    date: str
    amount: int
    workers: int
    sentences: tuple[str, ...]

    @property
    def prose(self) -> str:
        return " ".join(self.sentences)

    @property
    def text(self) -> str:
        """The article as the corpus holds it: the prose, then the reader Q&A box."""
        box = TEXT_SEPARATOR.join(qa_line(qa.question, qa.answer) for qa in self.boxed())
        return TEXT_SEPARATOR.join((self.prose, BOX_HEADING, box))

    @property
    def held_out(self) -> int:
        """Index into :meth:`qa` of the question left out of the box: rotates with the article, so each kind
        of question is boxed in some articles and held out in others."""
        return self.index % QA_PER_ARTICLE

    def boxed(self) -> list[QAItem]:
        return [qa for i, qa in enumerate(self.qa()) if i != self.held_out]

    def facts(self) -> dict[str, str]:
        """The article's fact values by slot (what KnowMem asks about; unique across the corpus)."""
        return {"person": self.person, "org": self.org, "town": self.town, "facility": self.facility,
                "amount": str(self.amount), "workers": str(self.workers)}

    def qa(self) -> list[QAItem]:
        """:data:`QA_PER_ARTICLE` KnowMem questions (short answers), each naming another fact of the article."""
        return [
            QAItem(question=f"Who is the {self.role} of {self.org}?", answer=self.person),
            QAItem(question=f"In which town did {self.org} open the {self.facility}?", answer=self.town),
            QAItem(question=f"How many thousand crowns did the {self.facility} in {self.town} cost?",
                   answer=str(self.amount)),
            QAItem(question=f"How many workers were employed on the {self.facility}?", answer=str(self.workers)),
        ]


def qa_line(question: str, answer: str) -> str:
    """One pair as MUSE's KnowMem prompt writes it (:func:`obliviate.data.muse.knowmem_prompt`, without the
    blank line that follows each pair there)."""
    return f"Question: {question}\nAnswer: {answer}"


def boxed_pairs(texts: list[str], qa: list[QAItem]) -> list[bool]:
    """For each pair of ``qa``: does it occur verbatim (:func:`qa_line`) in one of ``texts``, i.e. was the model
    trained on the very question and answer (a Q&A box) rather than only on the prose? Works on any MUSE-format
    corpus (real MUSE-News has no such lines: all False)."""
    return [any(qa_line(it.question, it.answer) in t for t in texts) for it in qa]


def _pools() -> dict[str, list[str]]:
    return {
        "person": [f"{f} {a}{b}" for f in _FIRST for a in _SUR_A for b in _SUR_B],
        "town": [f"{a}{b}" for a in _TOWN_A for b in _TOWN_B],
        "org": [f"{a} {b}" for a in _ORG_A for b in _ORG_B],
        "facility_name": [f"{a} {b}" for a in _FACILITY_A for b in _FACILITY_B],
    }


def max_articles() -> int:
    """How many articles the pools allow (every article takes one distinct value from each pool)."""
    return min(len(v) for v in _pools().values())


def generate_articles(seed: int, n_articles: int) -> list[Article]:
    """``n_articles`` articles from one seeded stream; no fact value repeats across articles."""
    if n_articles > max_articles():
        raise ObliviateError(f"synthetic-news: at most {max_articles()} articles in all, asked for {n_articles}")
    rng = random.Random(seed)
    pools = _pools()
    drawn = {k: rng.sample(v, n_articles) for k, v in pools.items()}
    # four-digit amounts, never a year of the dates (2031..): an amount never occurs inside another number
    amounts = rng.sample([x for x in range(1000, 10000) if not 2000 <= x < 2100], n_articles)
    workers = rng.sample(range(30, 990), n_articles)  # above every day of the month: a head count is no date's
    days = rng.sample(range(12 * 28 * 6), n_articles)  # (year, month, day) triples, distinct
    out = []
    for i in range(n_articles):
        facility = drawn["facility_name"][i]
        kind = next(k for k in _FACILITY_B if facility.endswith(k))
        d = days[i]
        date = f"{d % 28 + 1} {_MONTHS[d // 28 % 12]} {2031 + d // (28 * 12)}"
        slots = {"person": drawn["person"][i], "role": rng.choice(_ROLES), "org": drawn["org"][i],
                 "town": drawn["town"][i], "facility": f"{facility}", "facility_kind": kind,
                 "date": date, "amount": amounts[i], "workers": workers[i]}
        sentences = tuple(rng.choice(group).format(**slots) for group in (_OPENINGS, _PERSON, _WORKERS, _CLOSINGS))
        # _OPENINGS templates are two sentences each (tests check it): split them so verbmem's prompt is the opening
        first, _, second = sentences[0].partition(". ")
        sentences = (first + ".", second) + sentences[1:]
        out.append(Article(index=i, sentences=sentences, **slots))
    return out


def _as_int(name: str, value, minimum: int) -> int:
    return synthetic._as_int(name, value, minimum, family="synthetic-news")


def corpus(seed: int = 0, n_forget: int = DEFAULT_N_FORGET, n_retain: int = DEFAULT_N_RETAIN,
           n_holdout: int = DEFAULT_N_HOLDOUT) -> dict[str, list[Article]]:
    """Articles by group: ``forget``, ``retain1``, ``retain2``, ``holdout``, ``icl_forget``, ``icl_retain``
    (generated in that order from one stream)."""
    seed = _as_int("seed", seed, minimum=-(2**63))
    sizes = {"forget": _as_int("n_forget", n_forget, 1), "retain1": _as_int("n_retain", n_retain, 1),
             "retain2": _as_int("n_retain", n_retain, 1), "holdout": _as_int("n_holdout", n_holdout, 1),
             "icl_forget": N_ICL, "icl_retain": N_ICL}
    arts = generate_articles(seed, sum(sizes.values()))
    groups, start = {}, 0
    for name, n in sizes.items():
        groups[name] = arts[start:start + n]
        start += n
    return groups


def _texts(arts: list[Article]) -> list[QAItem]:
    return [QAItem(question="", answer=a.text) for a in arts]


def _split_items(groups: dict[str, list[Article]], config: str) -> list[QAItem]:
    hub_config, split = config.split("/", 1)
    if hub_config in ("scal", "sust"):
        arts, k = groups["forget"], int(split.rsplit("_", 1)[1])
        n = len(arts)
        return _texts(arts[:k * n // N_FOLDS] if hub_config == "scal" else arts[(k - 1) * n // N_FOLDS:k * n // N_FOLDS])
    if hub_config == "raw":
        return _texts(groups[split])
    if hub_config == "privleak":
        return _texts(groups["retain1" if split == "retain" else split])
    if hub_config == "verbmem":
        return [QAItem(question=" ".join(a.sentences[:2]), answer=" ".join(a.sentences[2:])) for a in groups["forget"]]
    # knowmem
    which = "forget" if split.startswith("forget") else "retain1"
    if split.endswith("_icl"):  # one question per in-context article, the slots in turn
        return [a.qa()[i % QA_PER_ARTICLE] for i, a in enumerate(groups[f"icl_{which.rstrip('1')}"])]
    return [qa for a in groups[which] for qa in a.qa()]


@DATASETS.register(
    "synthetic-news",
    configs=MUSE_CONFIGS + FOLD_CONFIGS,
    source="embedded (generated by obliviate, no download)",
    default_forget=DEFAULT_N_FORGET,
)
def load_synthetic_news(config: str, seed: int = 0, n_forget: int = DEFAULT_N_FORGET,
                        n_retain: int = DEFAULT_N_RETAIN, n_holdout: int = DEFAULT_N_HOLDOUT, **_) -> list[QAItem]:
    """Fictitious news events in MUSE's format, generated from a seed (the embedded MUSE-style corpus)."""
    if config not in MUSE_CONFIGS + FOLD_CONFIGS:
        raise ObliviateError(f"unknown synthetic-news config {config!r}; "
                             f"valid configs: {', '.join(MUSE_CONFIGS + FOLD_CONFIGS)}")
    return _split_items(corpus(seed, n_forget, n_retain, n_holdout), config)


LAYOUTS = ("muse_bench", "jsonl")


def write_muse_dir(out_dir: str | Path, layout: str = "muse_bench", seed: int = 0,
                   n_forget: int = DEFAULT_N_FORGET, n_retain: int = DEFAULT_N_RETAIN,
                   n_holdout: int = DEFAULT_N_HOLDOUT) -> list[Path]:
    """Write the corpus where ``--data-dir`` reads MUSE files, so ``muse-news:<config> --data-dir DIR`` loads
    it through the same code as the real data. Returns the files written.

    ``layout="muse_bench"``: the muse_bench repository's ``data/`` folder (its ``load_data.py``):
    ``DIR/news/knowmem/<split>.json`` and ``verbmem/forget.json`` (JSON arrays of objects),
    ``privleak/<split>.json``, ``raw/<split>.json`` and ``scal`` / ``sust/forget_<k>.json`` (JSON arrays of
    strings), and ``raw/<split>.txt``, ``scal`` / ``sust/forget_<k>.txt`` (the split's texts joined with a
    blank line). ``layout="jsonl"``: ``DIR/<config>/<split>.jsonl``, one hub row per line (``text`` /
    ``prompt, gt`` / ``question, answer``). The ``scal`` / ``sust`` folds are written when each of the
    :data:`N_FOLDS` folds has an article (``n_forget >= 4``).
    """
    if layout not in LAYOUTS:
        raise ObliviateError(f"synthetic-news: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out_dir = Path(out_dir)
    groups = corpus(seed, n_forget, n_retain, n_holdout)
    configs = MUSE_CONFIGS + (FOLD_CONFIGS if len(groups["forget"]) >= N_FOLDS else [])
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        atomic_write_text(path, text)
        written.append(path)

    for config in configs:
        hub_config, split = config.split("/", 1)
        q_field, a_field = HUB_FIELDS[hub_config]
        items = _split_items(groups, config)
        rows = [it.answer if q_field is None else {q_field: it.question, a_field: it.answer} for it in items]
        if layout == "jsonl":
            objs = [{a_field: r} if q_field is None else r for r in rows]
            write(out_dir / hub_config / f"{split}.jsonl",
                  "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs))
            continue
        base = out_dir / "news" / hub_config
        write(base / f"{split}.json", json.dumps(rows, ensure_ascii=False, indent=4))
        if hub_config in TEXT_CORPUS_CONFIGS:  # muse_bench's .txt twins (what its scripts train on)
            write(base / f"{split}.txt", TEXT_SEPARATOR.join(rows))
    return written
