"""What edgeseg uses of the ``tensorrt`` Python bindings, as read from the real 10.3 and 11.4 wheels.

The test fakes take their enum values from here, and ``tests/test_tensorrt_bindings.py`` checks
this against the real bindings (``tensorrt-cu12-bindings`` 10.3.0 and 11.4.0.106 from PyPI).
"""

from __future__ import annotations

import enum

# NetworkDefinitionCreationFlag, member -> value, per major version
REAL_FLAGS = {
    10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
    11: {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}

Flags10 = enum.IntEnum("Flags10", REAL_FLAGS[10])
Flags11 = enum.IntEnum("Flags11", REAL_FLAGS[11])

# class -> methods / properties edgeseg calls, with the parameters it passes (by name where it
# passes them by keyword, else their number); checked against pybind11's signatures.
API: dict[str, dict[str, tuple]] = {
    "ILogger": {"__init__": (), "log": ("severity", "msg")},
    "Builder": {"__init__": ("logger",), "create_network": (), "create_builder_config": (),
                "create_optimization_profile": (), "build_serialized_network": ("network", "config")},
    "OnnxParser": {"__init__": ("network", "logger"), "parse": ("model", "path"), "num_errors": None,
                   "get_error": ("index",)},
    "ParserError": {"desc": (), "node": ()},
    "INetworkDefinition": {"num_inputs": None, "num_outputs": None, "get_input": ("index",),
                           "get_output": ("index",)},
    "ITensor": {"name": None, "shape": None},
    "IBuilderConfig": {"set_memory_pool_limit": ("pool", "pool_size"), "clear_flag": ("flag",),
                       "add_optimization_profile": ("profile",), "create_timing_cache": ("serialized_timing_cache",),
                       "set_timing_cache": ("cache", "ignore_mismatch"), "get_timing_cache": ()},
    "ITimingCache": {"serialize": ()},
    "IOptimizationProfile": {"set_shape": ("input", "min", "opt", "max")},
    "Runtime": {"__init__": ("logger",), "deserialize_cuda_engine": ("serialized_engine",)},
    "ICudaEngine": {"num_io_tensors": None, "get_tensor_name": ("index",), "get_tensor_mode": ("name",),
                    "get_tensor_dtype": ("name",), "create_execution_context": ()},
    "IExecutionContext": {"set_input_shape": ("name", "shape"), "get_tensor_shape": ("name",),
                          "set_tensor_address": ("name", "memory"), "execute_async_v3": ("stream_handle",)},
}
# enums (or enum-like classes) and the members edgeseg uses
ENUMS = {
    "ILogger.Severity": ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"),
    "TensorIOMode": ("INPUT", "OUTPUT"),
    "MemoryPoolType": ("WORKSPACE",),
    "BuilderFlag": ("TF32",),
    "NetworkDefinitionCreationFlag": ("STRONGLY_TYPED",),
}
FUNCTIONS = ("nptype",)
