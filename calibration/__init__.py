"""INT8 calibration producing explicit Q/DQ ONNX models (``edgeseg.calibration``)."""
