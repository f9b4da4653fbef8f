"""Attribute a whole dataset: many prompts, in length-sorted batches, in one or many processes,
resumably (see :func:`attribute_dataset`)."""

from genattrib.dataset.records import Record, read_records
from genattrib.dataset.run_dataset import DatasetRun, attribute_dataset

__all__ = ["DatasetRun", "Record", "attribute_dataset", "read_records"]
