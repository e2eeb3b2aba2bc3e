"""The controller's revisioned document store: (kind, id) -> JSON, one global revision.

The store knows nothing about resource kinds; the service layer gives documents meaning.
"""

from openvpc.store.sqlite import Document, Store, StoreBusy, StoreError, Transaction

__all__ = ["Document", "Store", "StoreBusy", "StoreError", "Transaction"]
