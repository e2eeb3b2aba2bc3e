#!/usr/bin/env bash
# A VPC with a public and a private subnet, an internet gateway, a route table for the public
# subnet and an instance in each subnet, built with the AWS CLI against an openvpc endpoint;
# then each instance pings the other. Needs the tenant's credentials and the endpoint:
#   eval "$(openvpc tenant env NAME --lab LAB)"   # AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL
#   examples/public-private.sh [LAB]
set -euo pipefail
LAB=${1:-}
ec2() { aws ec2 --output text "$@"; }
tag() { echo "ResourceType=$1,Tags=[{Key=Name,Value=$2}]"; }

vpc=$(ec2 create-vpc --cidr-block 10.20.0.0/16 --tag-specifications "$(tag vpc demo)" \
      --query Vpc.VpcId)
public=$(ec2 create-subnet --vpc-id "$vpc" --cidr-block 10.20.1.0/24 \
         --tag-specifications "$(tag subnet public)" --query Subnet.SubnetId)
private=$(ec2 create-subnet --vpc-id "$vpc" --cidr-block 10.20.2.0/24 \
          --tag-specifications "$(tag subnet private)" --query Subnet.SubnetId)
igw=$(ec2 create-internet-gateway --query InternetGateway.InternetGatewayId)
ec2 attach-internet-gateway --internet-gateway-id "$igw" --vpc-id "$vpc" >/dev/null
rtb=$(ec2 create-route-table --vpc-id "$vpc" --tag-specifications "$(tag route-table public)" \
      --query RouteTable.RouteTableId)
ec2 create-route --route-table-id "$rtb" --destination-cidr-block 0.0.0.0/0 \
    --gateway-id "$igw" >/dev/null
ec2 associate-route-table --route-table-id "$rtb" --subnet-id "$public" >/dev/null
ec2 modify-subnet-attribute --subnet-id "$public" --map-public-ip-on-launch >/dev/null

run() {  # subnet name -> instance id
    ec2 run-instances --image-id ami-0abcdef1234567890 --instance-type t3.micro --count 1 \
        --subnet-id "$1" --tag-specifications "$(tag instance "$2")" \
        --query 'Instances[0].InstanceId'
}
web=$(run "$public" web)
db=$(run "$private" db)
aws ec2 wait instance-running --instance-ids "$web" "$db"
aws ec2 describe-instances --instance-ids "$web" "$db" --output table \
    --query 'Reservations[].Instances[].[Tags[?Key==`Name`]|[0].Value,InstanceId,State.Name,PrivateIpAddress,SubnetId]'

ip_of() { ec2 describe-instances --instance-ids "$1" --query 'Reservations[0].Instances[0].PrivateIpAddress'; }
lab=()
if [ -n "$LAB" ]; then lab=(--lab "$LAB"); fi
openvpc exec "${lab[@]}" "$web" -- ping -c 2 -W 2 "$(ip_of "$db")"
openvpc exec "${lab[@]}" db -- ping -c 2 -W 2 "$(ip_of "$web")"
echo "web ($web) and db ($db) reach each other in $vpc"
