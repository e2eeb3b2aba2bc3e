"""The pipeline's stages, one module each: ingress (from a VM), route (IP), bridge (MAC),
fabric (to and from the underlay) and agent (injection); `pipeline` holds their shared pass."""

IP_TYPE = b"\x08\x00"  # the IPv4 EtherType as it sits in a frame
MAX_DEPTH = 4  # next-hop nesting (composite of composites) before we call it a loop
