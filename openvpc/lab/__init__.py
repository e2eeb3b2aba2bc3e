"""Labs: the in-memory fabric and simulator, and the real lab on network namespaces with real
processes (`real.py`: `openvpc up/status/exec/down`)."""
