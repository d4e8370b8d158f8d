"""A no-op pynetdicom Storage SCP (accepts every storage class and syntax, discards the
data set): the library's own ceiling on this machine.  ``python noop_scp.py PORT``."""

from __future__ import annotations

import socket
import sys
from typing import Any

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification


def nodelay(event: Any) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    ae = AE(ae_title="NOOP")
    ae.maximum_associations = 32
    ae.maximum_pdu_size = 0
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, list(AllTransferSyntaxes))
    ae.start_server(
        ("127.0.0.1", int(sys.argv[1])),
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_CONN_OPEN, nodelay)],
    )


if __name__ == "__main__":
    main()
