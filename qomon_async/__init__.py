"""qomon_async: the async Python client for the Qomon API."""
