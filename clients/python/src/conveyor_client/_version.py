__version__ = "1.0.0"
#: The HTTP API this client speaks: its major version is the client's.
API_VERSION = "v1"
