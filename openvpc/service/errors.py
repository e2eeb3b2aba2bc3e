"""The service's one exception, with the EC2 error codes and messages clients expect."""


class ServiceError(Exception):
    """A request the service refuses; `code` is the EC2 error code (e.g. InvalidVpcID.NotFound)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# resource noun (as EC2 spells it in messages) -> its NotFound code
_NOT_FOUND = {
    "vpc": "InvalidVpcID.NotFound",
    "subnet": "InvalidSubnetID.NotFound",
    "routeTable": "InvalidRouteTableID.NotFound",
    "instance": "InvalidInstanceID.NotFound",
    "networkInterface": "InvalidNetworkInterfaceID.NotFound",
    "securityGroup": "InvalidGroup.NotFound",
    "networkAcl": "InvalidNetworkAclID.NotFound",
    "internetGateway": "InvalidInternetGatewayID.NotFound",
    "natGateway": "NatGatewayNotFound",
    "allocation": "InvalidAllocationID.NotFound",
    "vpcPeeringConnection": "InvalidVpcPeeringConnectionID.NotFound",
    "association": "InvalidAssociationID.NotFound",
}


def not_found(noun: str, id: str) -> ServiceError:
    if noun == "securityGroup":  # EC2 words this one differently
        return ServiceError(_NOT_FOUND[noun], f"The security group '{id}' does not exist")
    return ServiceError(_NOT_FOUND[noun], f"The {noun} ID '{id}' does not exist")


def invalid_value(param: str, value: object, why: str) -> ServiceError:
    return ServiceError(
        "InvalidParameterValue", f"Value ({value}) for parameter {param} is invalid. {why}"
    )


def dependency(noun: str, id: str) -> ServiceError:
    return ServiceError(
        "DependencyViolation", f"The {noun} '{id}' has dependencies and cannot be deleted."
    )


def in_use(ip: str) -> ServiceError:
    return ServiceError("InvalidIPAddress.InUse", f"Address {ip} is in use.")
