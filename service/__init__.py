"""The online stage: the gRPC service, its stream sessions, pose workers, batcher and client.

Imports no torch (a test checks it). The contract is ``proto/actionrec/v1/actionrec.proto``;
its generated Python code lives in ``service/generated`` (``python -m service.codegen``).
"""
