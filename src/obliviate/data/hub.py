"""Reading a data set from the Hugging Face hub (``datasets.load_dataset``), failing fast when it is offline.

Without a connection, the hub client retries each request with back-off (~26 s) before it fails or falls
back to a cached copy. :func:`load_hub_dataset` first tries to open a connection to the hub's endpoint
(3 s at most); when that fails it runs ``load_dataset`` in the hub's offline mode, which reads a cached
copy at once or fails at once, and the error says the hub was unreachable.
"""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlparse

from ..errors import ObliviateError


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub's endpoint cannot be reached (a name that does not resolve, a refused or timed-out
    connection), or None when a connection opens. ``HF_HUB_OFFLINE=1`` counts as unreachable."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port}: {e.strerror or type(e).__name__}"


@contextlib.contextmanager
def _offline(on: bool):
    """The hub client and ``datasets`` in offline mode (cached copies only) while the block runs."""
    import datasets
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    if on:
        constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def load_hub_dataset(hub_id: str, config: str, split: str, where: str, hint: str):
    """``datasets.load_dataset(hub_id, config, split=split)``, or a one-line error naming ``where`` (the data
    set, config and split) and ending with ``hint`` (how to pass a local copy)."""
    try:
        import datasets
    except ImportError:
        raise ObliviateError(f"reading {hub_id} from the hub needs the `datasets` package; {hint}") from None
    unreachable = hub_unreachable()
    try:
        with _offline(unreachable is not None):
            return datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # noqa: BLE001 - network/hub errors become one line
        if unreachable is not None:
            raise ObliviateError(f"could not read {where}: the hub cannot be reached ({unreachable}) and no "
                                 f"cached copy was found; {hint}") from None
        msg = " ".join(str(e).split())
        raise ObliviateError(f"could not read {where} from the hub ({type(e).__name__}: {msg}); {hint}") from None
