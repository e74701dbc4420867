"""The device side: hardware profiles, the ONNX graph a child is timed as, latency (timed here, in
a worker process, on a board's agent, or predicted from the graph by a calibration), peak RAM and
flash, static cost, and the board agent itself (`agent`, torch-free)."""
