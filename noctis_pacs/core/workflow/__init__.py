"""Pure workflow pieces: worklist items, MWL keys, MPPS rules, event kinds.

No I/O here: ``storage`` keeps these in the index, ``dimse`` and ``dicomweb``
translate them to and from their protocols.
"""
