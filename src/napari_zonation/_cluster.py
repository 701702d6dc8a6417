"""The dask.distributed client a run uses: one passed in, an address to connect to, or the
client already made the default in this process (dask's own convention for dask arrays).

dask.distributed is imported only here and only when asked for: it is an optional dependency.
"""

from __future__ import annotations

import contextlib
import re

from ._validation import ZonationInputError

#: Seconds to wait for a scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+$")


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ZonationInputError(
            "running on a dask cluster needs dask.distributed: pip install distributed "
            "(or pip install 'napari-zonation[cluster]')."
        ) from exc
    return distributed


def connect(address: str, timeout_s: float | None = None):
    """Connect to a running dask.distributed scheduler.

    Parameters
    ----------
    address : str
        ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``, ...), as printed by ``dask scheduler``
        or a dask-jobqueue / Kubernetes cluster's ``scheduler_address``.
    timeout_s : float, optional
        Seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT_S`).

    Returns
    -------
    distributed.Client

    Raises
    ------
    ZonationInputError
        A malformed address, or a scheduler that does not answer in time.
    """
    if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
        raise ZonationInputError(
            f"{address!r} is not a dask scheduler address; give one like tcp://HOST:8786 "
            "(printed by 'dask scheduler' or by your cluster's scheduler_address)."
        )
    distributed = _distributed()
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    try:
        client = distributed.Client(address.strip(), timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise ZonationInputError(
            f"the dask scheduler at {address} does not answer within {timeout_s:g} s ({why}); "
            "start it ('dask scheduler', or your cluster's), or check the host and port."
        ) from exc
    return client


def default_client():
    """The dask.distributed client made the default in this process, or None."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        return distributed.default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def using(client, *, lazy: bool):
    """The client a run uses (None: this process's threads), closed afterwards if made here.

    Parameters
    ----------
    client : distributed.Client, str or None
        A client, a scheduler address to connect to, or None: the default client of this
        process when the input is a lazy (dask) array, else none.
    lazy : bool
        Whether the input is lazy (a default client is used for dask arrays only, as dask
        itself does).
    """
    if client is None:
        yield default_client() if lazy else None
        return
    if isinstance(client, str):
        made = connect(client)
        try:
            yield made
        finally:
            made.close()
        return
    if not (hasattr(client, "submit") and hasattr(client, "scatter")):
        raise ZonationInputError(
            f"client={client!r} is not a dask.distributed Client; pass a Client, a scheduler "
            "address (tcp://HOST:PORT), or None."
        )
    if getattr(client, "status", "running") not in ("running", "connecting"):
        raise ZonationInputError(
            f"the dask client is {client.status}; connect it again (Client(address))."
        )
    yield client
