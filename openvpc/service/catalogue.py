"""The fixed catalogue of images and instance types: recorded on instances, not interpreted,
except for the interface and address limits an instance type sets."""

import re
from dataclasses import dataclass

from openvpc.service.errors import ServiceError


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int
    max_interfaces: int  # network interfaces an instance of this type may have
    max_ips: int  # private IPv4 addresses per interface, the primary one included


IMAGES = {
    i.id: i
    for i in (
        Image("ami-0abcdef1234567890", "openvpc-netns", "A network namespace VM of the lab"),
        Image("ami-0b5e7e0ad5ea10001", "ubuntu-24.04-netns", "Ubuntu 24.04 (a lab namespace VM)"),
        Image("ami-0b5e7e0ad5ea10002", "debian-12-netns", "Debian 12 (a lab namespace VM)"),
        Image("ami-0b5e7e0ad5ea10003", "al2023-netns", "Amazon Linux 2023 (a lab namespace VM)"),
    )
}
DEFAULT_IMAGE = "ami-0abcdef1234567890"

# AWS's own limits for these types
TYPES = {
    t.name: t
    for t in (
        InstanceType("t2.micro", 1, 1024, 2, 2),
        InstanceType("t3.nano", 2, 512, 2, 2),
        InstanceType("t3.micro", 2, 1024, 2, 2),
        InstanceType("t3.small", 2, 2048, 3, 4),
        InstanceType("t3.medium", 2, 4096, 3, 6),
        InstanceType("m5.large", 2, 8192, 3, 10),
        InstanceType("c5.large", 2, 4096, 3, 10),
    )
}
DEFAULT_TYPE = "t3.micro"
# a detached interface is not bound by a type yet: the largest one bounds it
MAX_IPS_ANY = max(t.max_ips for t in TYPES.values())

_AMI_ID = re.compile(r"ami-[0-9a-f]{8}([0-9a-f]{9})?")


def check_image(image_id: str) -> Image:
    if not isinstance(image_id, str) or not _AMI_ID.fullmatch(image_id):
        raise ServiceError(
            "InvalidAMIID.Malformed", f'Invalid id: "{image_id}" (expecting "ami-...")'
        )
    found = IMAGES.get(image_id)
    if found is None:
        raise ServiceError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    return found


def instance_type(name: str) -> InstanceType:
    found = TYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise ServiceError(
            "InvalidParameterValue", f"The following supplied instance types do not exist: [{name}]"
        )
    return found


def max_ips(type_name: str) -> int:
    """Private addresses per interface on an instance of this type (the largest if unknown)."""
    found = TYPES.get(type_name)
    return MAX_IPS_ANY if found is None else found.max_ips
