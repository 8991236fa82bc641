"""The on-device ONNX runtime: one model loader, the model contract, the skin classifier."""
