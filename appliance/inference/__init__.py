"""ONNX Runtime model runner and model metadata checks."""
