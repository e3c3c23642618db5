"""Export stage: PyTorch checkpoint → ONNX / OpenVINO / TFLite artifacts (fp32 and int8),
each validated against PyTorch through its edge backend, plus `emoedge bench`."""
