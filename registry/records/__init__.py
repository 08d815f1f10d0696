"""IHI -> service ID records: lifecycle, storage and the native API."""

from registry.records.controller import RecordController
from registry.records.service import RecordService

__all__ = ("RecordController", "RecordService")
