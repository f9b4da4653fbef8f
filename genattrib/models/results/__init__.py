"""Results: engine results assembled into a typed output with its provenance (``assemble.py``),
stored dense, top-k or streamed to a folder with a resume fingerprint (``storage.py``), checked
for convergence (``convergence.py``); tokens decoded for display (``token_text.py``)."""
