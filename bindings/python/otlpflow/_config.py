"""The settings given to `Pipeline(...)` made into a native config, and the
native pipeline started from it."""

from __future__ import annotations

import ctypes
from typing import Any, Mapping, Optional, Union

from . import _ffi
from ._native import (ConfigError, _error, _check, _Keep, _fill_value, _Guard, _millis, _COMPRESSION,
                      _PROTOCOL, INVALID_CONFIG, OK)


def start(lib, *, endpoint: Optional[str], protocol: str, compression: str, service_name: Optional[str],
          service_version: Optional[str], resource: Optional[Mapping[str, Any]],
          headers: Optional[Mapping[str, str]], policy: Optional[str], max_wait: Optional[float],
          shards: int, workers: int,
          linger: Optional[float], from_env: bool,
          settings: Mapping[str, Union[str, int, float, bool]]) -> _Guard:
    """Checks the settings, builds the native config (the environment's
    `OTEL_*` first when `from_env`, then the arguments over it) and starts
    the pipeline; a bad setting raises `ConfigError` naming it, with the
    native side's message."""
    if protocol not in _PROTOCOL:
        raise ConfigError(INVALID_CONFIG, "protocol must be one of %s" % ", ".join(sorted(_PROTOCOL)))
    if compression not in _COMPRESSION:
        raise ConfigError(INVALID_CONFIG, "compression must be one of none, gzip, zstd")
    if policy not in (None, "drop", "block"):
        raise ConfigError(INVALID_CONFIG, "policy must be 'drop' or 'block'")
    # Neither given: the environment's (OTLPFLOW_POLICY) when read, else
    # drop with a 1 s wait.
    set_policy = policy is not None or max_wait is not None or not from_env
    try:
        max_wait_ms = _millis(1.0 if max_wait is None else max_wait, "max_wait")
        linger_ms = None if linger is None else _millis(linger, "linger")
    except (TypeError, ValueError) as e:
        raise ConfigError(INVALID_CONFIG, str(e)) from None
    cfg = ctypes.c_void_p()
    _check(lib.otlpflow_config_new(ctypes.byref(cfg)), "config")
    try:
        def setting(code, what):
            if code != OK:
                raise _config_error(lib, cfg, code, what)
        if from_env:
            setting(lib.otlpflow_config_apply_env(cfg), "environment")
        keep = _Keep()
        if protocol != "grpc" or not from_env:
            setting(lib.otlpflow_config_set_protocol(cfg, _PROTOCOL[protocol]), "protocol")
        if endpoint is not None:
            setting(lib.otlpflow_config_set_endpoint(cfg, keep.str(endpoint)), "endpoint")
        if service_name is not None:
            setting(lib.otlpflow_config_set_service_name(cfg, keep.str(service_name)), "service_name")
        if service_version is not None:
            setting(lib.otlpflow_config_set_service_version(cfg, keep.str(service_version)), "service_version")
        for k, v in (resource or {}).items():
            val = _ffi.Value()
            _fill_value(val, v, keep, allow_array=False)
            setting(lib.otlpflow_config_add_resource_attribute(cfg, keep.str(k), ctypes.byref(val)), "resource")
        for k, v in (headers or {}).items():
            setting(lib.otlpflow_config_add_header(cfg, keep.str(k), keep.str(v)), "headers")
        if compression != "none" or not from_env:
            setting(lib.otlpflow_config_set_compression(cfg, _COMPRESSION[compression]), "compression")
        if set_policy:
            setting(lib.otlpflow_config_set_policy(cfg, 1 if policy == "block" else 0, max_wait_ms),
                    "policy")
        setting(lib.otlpflow_config_set_shards(cfg, shards), "shards")
        setting(lib.otlpflow_config_set_workers(cfg, workers), "workers")
        if linger_ms is not None:
            setting(lib.otlpflow_config_set_linger_ms(cfg, linger_ms), "linger")
        for name, value in settings.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                # endpoints=[...]: the comma-separated list of the name.
                value = ",".join(str(v) for v in value)
            setting(lib.otlpflow_config_set(cfg, keep.str(name), keep.str(str(value))), name)
        handle = ctypes.c_void_p()
        setting(lib.otlpflow_pipeline_start(cfg, ctypes.byref(handle)), "start")
        return _Guard(handle)
    finally:
        lib.otlpflow_config_free(cfg)


def _config_error(lib, cfg, code, what):
    """The error for a refused setting, with the native config's message."""
    buf = ctypes.create_string_buffer(1024)
    n = ctypes.c_size_t()
    if lib.otlpflow_config_error(cfg, buf, len(buf), ctypes.byref(n)) == OK and n.value:
        return ConfigError(code, "%s: %s" % (what, buf.value.decode()))
    err = _error(code, what)
    return err if isinstance(err, Exception) else ConfigError(code, what)
