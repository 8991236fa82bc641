"""Offline model building: feature tables, training, ONNX export, INT8 quantization, evaluation."""
