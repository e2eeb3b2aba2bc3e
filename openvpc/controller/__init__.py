"""The controller process: store + service + compiler behind the southbound gRPC server."""
