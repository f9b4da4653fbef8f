"""Call options: :class:`~genattrib.models.options.attribute_options.AttributeOptions` (every
option of ``attribute()``, written once), how the keyword arguments split into method parameters
and generation settings (``arguments.py``), prompts and continuations (``inputs.py``), explained
and source units (``explain_units.py``, ``sources.py``), and the validated request they resolve
to (``request.py``)."""
