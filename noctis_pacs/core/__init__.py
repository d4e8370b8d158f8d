"""The pure core: DICOM model, settings, outcomes, workflow rules, wire helpers. No I/O."""
