"""The older home of the log readers, kept so that code written against it keeps working: they live in
:mod:`obliviate.records` now (our ``items.jsonl`` schema, the original TOFU logs, open-unlearning's)."""

from .records import *  # noqa: F401,F403
from .records import __all__  # noqa: F401
from .records import _load, _resolve  # noqa: F401
from .records._values import _SET_ORDER, _fraction, _num, _opt_num, _short  # noqa: F401
from .records.items import _check_item  # noqa: F401
from .records.open_unlearning import OU_MIA, OU_PREFIX_SET  # noqa: F401
