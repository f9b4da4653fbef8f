"""Loading: a Hugging Face causal LM and its tokenizer, from the hub, a folder or the embedded
default model (``loader.py``, ``default_model.py``), dispatched over devices (``dispatch.py``).
:func:`genattrib.load_model` is the entry point."""
