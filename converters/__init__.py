"""Converters: ONNX export, FP16 conversion and TensorRT engine building (``edgeseg.converters``)."""
