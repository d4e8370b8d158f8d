"""The DIMSE Application Entity (placeholder: C-ECHO only, extended by issue 3)."""

from __future__ import annotations

from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from noctis_pacs.metrics import Metrics
from noctis_pacs.settings import Settings
from storage.archive import Archive


def handle_echo(event: Any) -> int:
    return 0x0000


class DimseServer:
    """Built by the wiring with its dependencies; ``start`` binds, ``stop`` closes."""

    def __init__(self, *, settings: Settings, archive: Archive, metrics: Metrics) -> None:
        self.settings = settings
        self.archive = archive
        self.metrics = metrics
        self._server: Any = None

    def start(self) -> None:
        ae = AE(ae_title=self.settings.dimse.ae_title)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            (self.settings.dimse.host, self.settings.dimse.port),
            block=False,
            evt_handlers=[(evt.EVT_C_ECHO, handle_echo)],
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
