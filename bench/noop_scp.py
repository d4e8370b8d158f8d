"""A no-op pynetdicom Storage SCP (accepts every storage class and syntax, discards the
data set): the library's own ceiling on this machine.

    python noop_scp.py PORT [wakeup]

With ``wakeup`` its associations carry Noctis's loop wake-ups (``dimse/wakeup.py``):
the ceiling of the protocol layer as Noctis runs it, with chunked receive to a
temporary file as Noctis does."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification


def nodelay(event: Any) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    extra: dict[str, Any] = {}
    fast = None
    if sys.argv[2:] == ["wakeup"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from dimse import fastpath
        from dimse.fastpath.listener import FastRequestHandler
        from noctis_pacs.core.metrics import build_metrics

        fastpath.configure_pynetdicom()
        fast = fastpath.enable(enabled=True, metrics=build_metrics())
        extra["request_handler"] = FastRequestHandler
    ae = AE(ae_title="NOOP")
    ae.maximum_associations = 32
    ae.maximum_pdu_size = 0
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, list(AllTransferSyntaxes))
    server = ae.make_server(
        ("127.0.0.1", int(sys.argv[1])),
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_CONN_OPEN, nodelay)],
        **extra,
    )
    server.fast_path = fast  # type: ignore[attr-defined]  # read by FastRequestHandler
    server.serve_forever()


if __name__ == "__main__":
    main()
