"""Unlearning methods: one file per paper, each registered in ``obliviate.registry.METHODS``.

``obliviate ls methods`` lists them with their metadata; ``docs/methods.md`` is the paper index.
"""

from .base import (  # noqa: F401
    LiveSequenceReference,
    Method,
    References,
    SequenceCache,
    TokenReference,
    compute_sequence_cache,
    get_method,
    make_config,
    parse_options,
)

# Importing a method module registers it.
from . import grad_ascent, grad_diff, npo, simnpo, idk_nll, idk_dpo  # noqa: E402,F401
from . import rmu, undial, wga, satimp, ce_u, pdu, palu  # noqa: E402,F401
