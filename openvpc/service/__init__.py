"""The service layer: AWS VPC semantics, validation, IPAM and number allocation over the store.

`Service` is the facade (one store transaction per call); the modules beside it hold the
rules by resource, over a typed view of one transaction (`repo.Repo`).
"""

from openvpc.service.errors import ServiceError
from openvpc.service.service import Service

__all__ = ["Service", "ServiceError"]
