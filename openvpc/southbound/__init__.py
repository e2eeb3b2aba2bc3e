"""The southbound: controller <-> agent gRPC stream of NodeConfigs, acks and learned addresses."""
