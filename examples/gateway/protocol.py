"""The gateway's wire protocol: it lives in the package (`cardledger.wire`), shared
with a cluster node's gateway; the example's server and load generator import it
from here."""

from cardledger.wire import *  # noqa: F401,F403
from cardledger.wire import ProtocolError, SourceNotAllowedError, decode_request, encode_error, encode_frame, encode_results, ops_array  # noqa: F401
