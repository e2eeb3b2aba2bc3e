"""botocore's EC2 service model, loaded once: operation names and their input/output shapes.

The shapes are botocore's, never hand-copied; only botocore's bundled data is read.
"""

from __future__ import annotations

import functools
import os

import botocore
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, StructureShape


@functools.cache
def service_model() -> ServiceModel:
    """The EC2 service model from botocore's own data directory (not ~/.aws/models)."""
    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    # No default search paths: a file under the user's ~/.aws must not change the API.
    loader = Loader(extra_search_paths=[data], include_default_search_paths=False)
    return ServiceModel(loader.load_service_model("ec2", "service-2"), "ec2")


def api_version() -> str:
    """The API version the model describes ("2016-11-15")."""
    return service_model().api_version


@functools.cache
def operation_names() -> frozenset[str]:
    """Every EC2 action name (CreateVpc, DescribeVpcs, ...)."""
    return frozenset(service_model().operation_names)


def operation(name: str) -> OperationModel:
    """The operation called `name`; KeyError if EC2 has no such action."""
    if name not in operation_names():
        raise KeyError(name)
    return service_model().operation_model(name)


def input_shape(name: str) -> StructureShape | None:
    """The input structure of action `name` (None if it takes no parameters)."""
    return operation(name).input_shape


def output_shape(name: str) -> StructureShape | None:
    """The output structure of action `name` (None if it answers only `<return>true</return>`)."""
    return operation(name).output_shape
