"""The service's contract: generated gRPC code is up to date, and the service imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service import codegen

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_matches_the_proto() -> None:
    stale = codegen.stale_files()
    assert not stale, f"service/generated is stale ({', '.join(stale)}): run `python -m service.codegen`"


def test_the_service_never_imports_torch() -> None:
    probe = "import sys, service.server, service.client, service.commands, actionrec.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_proto_is_the_one_source_of_the_service_name() -> None:
    from service.generated.actionrec.v1 import actionrec_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["ActionRecognition"]
    assert service.full_name == "actionrec.v1.ActionRecognition"
    assert {m.name for m in service.methods} >= {
        "StreamFrames",
        "StreamSkeletons",
        "ClassifyClip",
        "GetModelInfo",
        "EnrollAction",
        "ListActions",
        "DeleteAction",
    }
