"""The DIMSE side of the archive: DICOM services over pynetdicom's public API, and the
transport tuning that reaches past it, fenced in ``dimse/fastpath/``.

DICOM services (one file each, named by what they serve):
``store`` (C-STORE SCP, PS3.4 B), ``find`` (C-FIND, C.4.1), ``retrieve`` (C-MOVE and
C-GET, C.4.2 / C.4.3) with ``suboperations`` (their C-STORE results counted),
``worklist`` (MWL C-FIND, K), ``mpps_scp`` (N-CREATE / N-SET, F.7), ``scu`` (Noctis as
an SCU: C-ECHO a remote, send stored instances).

Shared by the services: ``services`` (the contexts and handlers, assembled once),
``server`` (the AE: bind, serve, stop), ``access`` (who may associate and use what),
``identifier`` (identifiers <-> the archive's query), ``status`` (status codes),
``observe`` (log context, metrics), ``audit`` (the audit trail), ``tls`` (PS3.15 B.9).

Transport tuning, all of it in ``fastpath/`` (gated on the validated pynetdicom
version, switched off by ``dimse.fast_path = false``; ``fastpath/privates.py`` lists
every pynetdicom internal touched, and why; docs/pynetdicom-fast-path.md).
"""
