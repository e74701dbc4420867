"""What leaves edgenas: the deployable bundle (`bundle`: retrained winner, model.onnx, int8,
TFLite for microcontrollers, manifest) and `bench` (latency of any ONNX model per profile)."""
