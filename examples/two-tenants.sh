#!/usr/bin/env bash
# One tenant's half of the main job, built with the AWS CLI: a VPC 10.0.0.0/16 with three
# subnets on three route tables, and four instances pinned to the lab's two nodes.
#   web  (main table, local route only)      reaches app and db
#   app  (table "app", local route only)     reaches web and db
#   db   (table "isolated": a blackhole for one other subnet, so replies to it die)
# `make demo` runs it once for tenant red (VXLAN; db drops web) and once for blue (MPLS over
# GRE; db drops app), with the tenant's credentials and the endpoint in the environment:
#   examples/two-tenants.sh PREFIX ENCAPSULATION BLACKHOLED-CIDR
set -euo pipefail
prefix=$1 encap=$2 blackholed=$3
ec2() { aws ec2 --output text "$@"; }
tags() { echo "ResourceType=$1,Tags=[{Key=Name,Value=$2}${3:-}]"; }

vpc=$(ec2 create-vpc --cidr-block 10.0.0.0/16 --query Vpc.VpcId --tag-specifications \
      "$(tags vpc prod ",{Key=openvpc:encapsulation,Value=$encap}")")
table() {
    ec2 create-route-table --vpc-id "$vpc" --tag-specifications "$(tags route-table "$1")" \
        --query RouteTable.RouteTableId
}
subnet() {
    ec2 create-subnet --vpc-id "$vpc" --cidr-block "$2" --tag-specifications "$(tags subnet "$1")" \
        --query Subnet.SubnetId
}
app_table=$(table app)
isolated=$(table isolated)
# an openvpc extension: GatewayId "blackhole" drops what the route matches
ec2 create-route --route-table-id "$isolated" --destination-cidr-block "$blackholed" \
    --gateway-id blackhole >/dev/null
web=$(subnet web 10.0.1.0/24)
app=$(subnet app 10.0.2.0/24)
db=$(subnet db 10.0.3.0/24)
ec2 associate-route-table --route-table-id "$app_table" --subnet-id "$app" >/dev/null
ec2 associate-route-table --route-table-id "$isolated" --subnet-id "$db" >/dev/null

ids=()
run() {  # name subnet node [extra tags]: Placement.HostId (an extension) picks the node
    ids+=("$(ec2 run-instances --image-id ami-0abcdef1234567890 --instance-type t3.micro \
        --count 1 --subnet-id "$2" --placement "HostId=$3" \
        --tag-specifications "$(tags instance "$1" "${4:-}")" --query 'Instances[0].InstanceId')")
}
vip=",{Key=openvpc:allowed-addresses,Value=10.0.1.100}"
if [ "$prefix" = r ]; then
    run r1 "$web" node1 "$vip"; run r2 "$web" node2 "$vip"; run r3 "$app" node2; run r4 "$db" node1
else
    run b1 "$web" node2; run b2 "$web" node1; run b3 "$app" node1; run b4 "$db" node2
fi
aws ec2 wait instance-running --instance-ids "${ids[@]}"
aws ec2 describe-instances --output table --query \
    'Reservations[].Instances[].[Tags[?Key==`Name`]|[0].Value,InstanceId,State.Name,PrivateIpAddress,Placement.HostId]'
